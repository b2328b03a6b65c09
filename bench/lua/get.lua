-- GET of the URL given on the command line (GET /summary?offset=0); only adds the report.
done = require("common").done

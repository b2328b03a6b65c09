"""humtemp benchmark suite: real redis-server shards, humtemp, a bare aiohttp reference, wrk."""

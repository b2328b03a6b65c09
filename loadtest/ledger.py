"""PLACEHOLDER (issue 5) so k8s/loadtest renders before issue 6 lands: replaced by the real
loadtest/ledger.py at merge; take the other side in any conflict."""

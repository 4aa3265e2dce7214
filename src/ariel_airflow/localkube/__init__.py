"""A local Kubernetes from upstream parts: `ariel platform cluster`."""

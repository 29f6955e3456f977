"""The knowledge network (issue #8): HQ and the missions, over mutual TLS.

- `pki`: the HQ CA, node certificates, TLS contexts, signatures;
- `nodes`: `index_config/nodes.yaml` and what each node may hold;
- `changes`: the change log every node appends to in the registry's transaction;
- `envelope`, `bundle`, `wire`: signed changes, content bundles (chunks + vectors + original), framing;
- `hub` + `listener`: HQ's replication API on its own mTLS port;
- `client`: a mission's push / pull / reconcile; `federation`: local + HQ search;
- `apply`: writing a received change in the crash-safe order; `state`: per-peer state and metrics;
- `runtime`: what `kms serve` starts.
"""

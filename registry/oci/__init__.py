"""OCI distribution: models as CNCF ModelPack artifacts in any OCI registry (docs/oci.md).

- ``reference``: ``oci://HOST[:PORT]/REPO[:TAG|@sha256:HEX]`` parsed and checked;
- ``modelpack``: the spec's media types and annotation keys; ModelPack manifests and configs built from
  resolved manifests, and pulled manifests checked;
- ``auth``: ``WWW-Authenticate`` challenges, the Bearer token protocol and basic auth, credentials;
- ``client``: the distribution HTTP API over httpx (blobs: HEAD, cross-repo mount, streaming upload,
  ranged streaming download; manifests: HEAD, GET, PUT).

Like ``fetch/`` this package returns bytes and metadata and never writes the catalog.
"""

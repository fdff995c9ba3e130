"""The local stacks, shared with the end-to-end layer."""

from tests.e2e.conftest import azure_stack, gcp_stack  # noqa: F401  (fixtures)

"""Signals nodes/ sends for apps that build on it (it imports none of them)."""

from django.dispatch import Signal

# Sent after the commit that lets a node take jobs it could not take before: it was added, came back,
# was resumed, or was enabled or given more slots. Keyword argument: `node`. The job engine fills the
# new slots at once instead of at its next sweep.
node_ready = Signal()

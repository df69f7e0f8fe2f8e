"""Hardware abstraction layer: one small interface per device kind, backends by profile.

`hal` imports nothing else of roombox. Backends register under the entry-point groups
``roombox.hal.<kind>``; the simulated backend of each kind registers there too.
"""

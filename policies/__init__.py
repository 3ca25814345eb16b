"""The pure rules core of veu-governor: catalog, classification, jurisdictions, caps, compute, red flag.

Nothing in this package performs I/O or imports a framework. Policy packs and catalog data arrive as
plain mappings (parsed by the service in ``agent/``) and are validated here with pydantic.
"""

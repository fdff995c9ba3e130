"""The pure core of the image pipeline: imaging, jobs, ports, use cases, fakes.

It imports the standard library and Pillow only. Cloud adapters live in
``core.clouds`` and are never imported from here.
"""

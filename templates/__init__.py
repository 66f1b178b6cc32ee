"""The default message templates, shipped in the wheel as package ``welcomeback_templates``.

Read only through ``importlib.resources`` (``daemon.templating.templates.defaults_dir``), so they work
from a checkout, an installed package or a zip.  The therapist's own copies live in the
``[templates] folder`` and win over these.
"""

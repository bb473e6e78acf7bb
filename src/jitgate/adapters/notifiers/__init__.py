"""Notifier plugins (SPEC §6): one module per channel type, registered under the
``jitgate.notifiers`` entry point group, one instance per configured channel.

Every notifier receives an immutable ``service.notifications.Message`` and speaks its peer's
native format; user-supplied text is escaped for that format by ``render``.
"""

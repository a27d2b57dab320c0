"""Live chat decisions: moderation, rate limits, slow mode, bans, emoji effects, the
super chat ledger and the history. Consumes ``chat.message``, ``user.registered`` and
``chat.topup``; publishes ``chat.accepted``/``rejected``/``effect``/``superchat``/
``moderation``; answers ``rpc.chat.history`` and ``rpc.chat.wallet``.

Modules: ``pipeline`` (the decision), ``text``/``ratelimit``/``commands``/``tiers``
(pure rules), ``ledger``, ``effects``, ``history``, ``service`` (handlers), ``bus``
(broker), ``worker`` (lifecycle), ``models`` (tables, migration 0007_chat).
"""

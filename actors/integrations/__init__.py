"""Adapters that plug memory-actors into agent frameworks, one module each.

Nothing is imported here: each adapter imports its framework, which only its
own extra installs (``actors.integrations.openai_agents`` needs
``memory-actors[openai-agents]``). The core package never imports them.
"""

"""Adapters that plug memory-actors into agent frameworks' memory interfaces, one module each.

Each adapter is its own module with its own optional extra, imported only by
name: ``actors.integrations.langgraph`` (``memory-actors[langgraph]``) and
``actors.integrations.openai_agents`` (``memory-actors[openai-agents]``).
``import actors`` loads none of them and none of their frameworks.
"""

"""Adapters that plug memory-actors into other frameworks' memory interfaces.

Each adapter is its own module with its own optional extra, imported only by
name (``import actors.integrations.langgraph``): ``import actors`` loads none
of them and none of their frameworks.
"""

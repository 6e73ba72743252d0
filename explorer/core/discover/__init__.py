"""Discover: what each adaptation changed, over a prompt set, confirmed on fresh samples."""

from explorer.core.discover.api import discover
from explorer.core.discover.prompts import PromptItem, prompt_set
from explorer.core.discover.result import Discovery

__all__ = ["Discovery", "PromptItem", "discover", "prompt_set"]

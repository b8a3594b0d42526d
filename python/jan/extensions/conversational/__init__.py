"""The built-in conversation store: threads, messages and assistants in the data folder."""

from jan.extensions.conversational.extension import ConversationalStoreExtension

__all__ = ["ConversationalStoreExtension"]

"""Shell templates for the on-machine training scripts (rendered by `bot.core.training`)."""

"""Messages as data: text plus Block Kit dicts, built by pure functions (no slack_sdk import).

Services use them to post and update; the Slack listeners use them for ephemeral answers. Every builder
keeps to Slack's limits (50 blocks, 3000 characters a section, 10 fields) by truncating with "and N more".
"""

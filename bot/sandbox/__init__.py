"""The sandbox: the real bot with a local Slack (a web page on top of the stand-in) and an embedded AWS.

``web`` serves the Slack-like page and its JSON API, ``users`` holds the demo workspace (four people and
one channel), and ``demo`` seeds the embedded moto server with a small fleet worth looking at.
"""

"""Block Kit validation with Slack's message-surface limits.

Slack rejects a message whose blocks break a limit with ``invalid_blocks`` and a list of
``"<problem> [json-pointer:<where>]"`` explanations. The stand-in applies the same limits so that a
bot which would be refused in production fails its tests instead. slack_sdk's model classes check
some per-element limits when the bot builds blocks with them, but not the 50-block message cap, nor
uniqueness of ids, nor raw dicts, so the server side has to check them again.

Validation also fills in what Slack fills in: a generated ``block_id`` for every block and an
``action_id`` for every interactive element that has none, so that recorded messages look like the
ones Slack hands back (and button clicks built from them carry real ids).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

MAX_BLOCKS_PER_MESSAGE: Final = 50
MAX_SECTION_TEXT: Final = 3000
MAX_SECTION_FIELDS: Final = 10
MAX_SECTION_FIELD_TEXT: Final = 2000
MAX_HEADER_TEXT: Final = 150
MAX_CONTEXT_ELEMENTS: Final = 10
MAX_ACTIONS_ELEMENTS: Final = 25
MAX_BUTTON_TEXT: Final = 75
MAX_BUTTON_VALUE: Final = 2000
MAX_URL: Final = 3000
MAX_ID: Final = 255
MAX_ALT_TEXT: Final = 2000
MAX_IMAGE_TITLE: Final = 2000
MAX_MARKDOWN_TOTAL: Final = 12000
MAX_OPTION_TEXT: Final = 75
MAX_OPTION_VALUE: Final = 150
MAX_OPTION_DESCRIPTION: Final = 75
MAX_SELECT_OPTIONS: Final = 100
MAX_CHOICE_OPTIONS: Final = 10
MAX_OVERFLOW_OPTIONS: Final = 5
MAX_PLACEHOLDER: Final = 150
MAX_CONFIRM_TITLE: Final = 100
MAX_CONFIRM_TEXT: Final = 300
MAX_CONFIRM_BUTTON: Final = 30
MAX_ACCESSIBILITY_LABEL: Final = 75

BLOCK_TYPES: Final = frozenset(
    {"header", "section", "context", "divider", "actions", "image", "rich_text", "markdown"}
)
RICH_TEXT_ELEMENT_TYPES: Final = frozenset(
    {"rich_text_section", "rich_text_list", "rich_text_preformatted", "rich_text_quote"}
)
_SELECT_TYPES: Final = frozenset(
    {
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_external_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
    }
)
_PICKER_TYPES: Final = frozenset({"datepicker", "timepicker", "datetimepicker"})
INTERACTIVE_TYPES: Final = (
    frozenset({"button", "overflow", "checkboxes", "radio_buttons", "workflow_button"})
    | _SELECT_TYPES
    | _PICKER_TYPES
)
_ACCESSORY_TYPES: Final = INTERACTIVE_TYPES - {"datetimepicker"} | {"image"}
_TEXT_TYPES: Final = frozenset({"plain_text", "mrkdwn"})
_BUTTON_STYLES: Final = frozenset({"primary", "danger"})


@dataclass(frozen=True)
class BlockKitReport:
    """Outcome of validating one message's blocks.

    ``blocks`` is a deep copy with generated ids filled in; store it, not the caller's list.
    ``errors`` are Slack-style ``"<problem> [json-pointer:/blocks/...]"`` strings.
    """

    blocks: list[dict[str, Any]]
    errors: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.errors

    def response_messages(self) -> list[str]:
        """The ``response_metadata.messages`` lines Slack sends with ``invalid_blocks``."""
        return [f"[ERROR] {e}" for e in self.errors] + [f"[WARN] {w}" for w in self.warnings]


class BlocksFormatError(ValueError):
    """The ``blocks`` argument is not a JSON array of objects (Slack: ``invalid_blocks_format``)."""


def parse_blocks(raw: object) -> list[Any] | None:
    """Accept blocks as slack_sdk sends them: a list in JSON bodies, a JSON string in form bodies.

    Returns ``None`` when the argument is absent; raises :class:`BlocksFormatError` when present but
    not an array.
    """
    if raw is None:
        return None
    value: object = raw
    if isinstance(raw, str):
        if raw.strip() == "":
            return None
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BlocksFormatError(f"blocks is not valid JSON: {exc.msg}") from exc
    if not isinstance(value, list):
        raise BlocksFormatError("blocks must be a JSON array")
    return value


def validate_blocks(
    blocks: list[Any],
    *,
    new_id: Callable[[], str],
    has_text_fallback: bool,
    max_blocks: int = MAX_BLOCKS_PER_MESSAGE,
) -> BlockKitReport:
    """Check ``blocks`` against Slack's message limits.

    ``new_id`` generates the ids Slack would assign to blocks and elements that lack them.
    ``has_text_fallback`` records whether a top-level ``text`` came along; its absence is a warning
    (notifications and screen readers fall back to it), never an error, as in Slack.
    """
    checker = _Checker(new_id)
    copied = copy.deepcopy(blocks)
    checker.check_message(copied, max_blocks=max_blocks)
    warnings: list[str] = []
    if copied and not has_text_fallback:
        warnings.append(
            "top-level text is missing; notifications and screen readers have no fallback for these blocks"
        )
    normalised = [b for b in copied if isinstance(b, dict)]
    return BlockKitReport(blocks=normalised, errors=tuple(checker.errors), warnings=tuple(warnings))


def find_action(
    blocks: list[dict[str, Any]], action_id: str, block_id: str | None = None
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Locate an interactive element by ``action_id`` (and optionally ``block_id``).

    Returns ``(block, element)``; used to build clicks from what was actually rendered.
    """
    for block in blocks:
        if block_id is not None and block.get("block_id") != block_id:
            continue
        candidates: list[Any] = []
        if block.get("type") == "actions":
            candidates = list(block.get("elements") or [])
        elif block.get("type") == "section" and isinstance(block.get("accessory"), dict):
            candidates = [block["accessory"]]
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block, element
    return None


def _where(pointer: str) -> str:
    return f"[json-pointer:{pointer}]"


class _Checker:
    """Walks one message's blocks, collecting every problem rather than stopping at the first."""

    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self.errors: list[str] = []
        self._block_ids: set[str] = set()
        self._action_ids: set[str] = set()
        self._markdown_total = 0

    def _fail(self, problem: str, pointer: str) -> None:
        self.errors.append(f"{problem} {_where(pointer)}")

    # -- primitives ---------------------------------------------------------------------------

    def _string(self, value: object, pointer: str, *, max_len: int, required: bool = True) -> str | None:
        if value is None:
            if required:
                self._fail("missing required field", pointer)
            return None
        if not isinstance(value, str):
            self._fail("must provide a string", pointer)
            return None
        if len(value) == 0:
            self._fail("must be more than 0 characters", pointer)
        elif len(value) > max_len:
            self._fail(f"must be less than {max_len + 1} characters", pointer)
        return value

    def _text(
        self,
        value: object,
        pointer: str,
        *,
        max_len: int,
        plain_only: bool = False,
        required: bool = True,
    ) -> None:
        if value is None:
            if required:
                self._fail("missing required field", pointer)
            return
        if not isinstance(value, dict):
            self._fail("must provide an object", pointer)
            return
        kind = value.get("type")
        allowed = {"plain_text"} if plain_only else _TEXT_TYPES
        if kind not in allowed:
            expected = " or ".join(sorted(allowed))
            self._fail(f"must be a text object of type {expected}", f"{pointer}/type")
            return
        self._string(value.get("text"), f"{pointer}/text", max_len=max_len)
        if "emoji" in value and (kind != "plain_text" or not isinstance(value["emoji"], bool)):
            self._fail("emoji is only allowed as a boolean on plain_text", f"{pointer}/emoji")
        if "verbatim" in value and (kind != "mrkdwn" or not isinstance(value["verbatim"], bool)):
            self._fail("verbatim is only allowed as a boolean on mrkdwn", f"{pointer}/verbatim")

    def _block_id(self, block: dict[str, Any], pointer: str) -> None:
        if "block_id" not in block:
            block["block_id"] = self._unique(self._block_ids)
            return
        value = self._string(block["block_id"], f"{pointer}/block_id", max_len=MAX_ID)
        if value is None:
            return
        if value in self._block_ids:
            self._fail(f"duplicate block_id {value!r}", f"{pointer}/block_id")
        self._block_ids.add(value)

    def _action_id(self, element: dict[str, Any], pointer: str) -> None:
        if "action_id" not in element:
            element["action_id"] = self._unique(self._action_ids)
            return
        value = self._string(element["action_id"], f"{pointer}/action_id", max_len=MAX_ID)
        if value is None:
            return
        if value in self._action_ids:
            self._fail(f"duplicate action_id {value!r}", f"{pointer}/action_id")
        self._action_ids.add(value)

    def _unique(self, taken: set[str]) -> str:
        while True:
            candidate = self._new_id()
            if candidate not in taken:
                taken.add(candidate)
                return candidate

    def _list(self, value: object, pointer: str, *, min_len: int, max_len: int) -> list[Any] | None:
        if value is None:
            self._fail("missing required field", pointer)
            return None
        if not isinstance(value, list):
            self._fail("must provide an array", pointer)
            return None
        if len(value) < min_len:
            self._fail(f"must provide at least {min_len} items", pointer)
        elif len(value) > max_len:
            self._fail(f"no more than {max_len} items allowed", pointer)
        return value

    # -- composition objects ------------------------------------------------------------------

    def _confirm(self, value: object, pointer: str) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            self._fail("must provide an object", pointer)
            return
        self._text(value.get("title"), f"{pointer}/title", max_len=MAX_CONFIRM_TITLE, plain_only=True)
        self._text(value.get("text"), f"{pointer}/text", max_len=MAX_CONFIRM_TEXT)
        self._text(value.get("confirm"), f"{pointer}/confirm", max_len=MAX_CONFIRM_BUTTON, plain_only=True)
        self._text(value.get("deny"), f"{pointer}/deny", max_len=MAX_CONFIRM_BUTTON, plain_only=True)
        if "style" in value and value["style"] not in _BUTTON_STYLES:
            self._fail("style must be primary or danger", f"{pointer}/style")

    def _options(self, value: object, pointer: str, *, max_len: int, plain_only: bool) -> None:
        options = self._list(value, pointer, min_len=1, max_len=max_len)
        for i, option in enumerate(options or []):
            where = f"{pointer}/{i}"
            if not isinstance(option, dict):
                self._fail("must provide an object", where)
                continue
            self._text(option.get("text"), f"{where}/text", max_len=MAX_OPTION_TEXT, plain_only=plain_only)
            self._string(option.get("value"), f"{where}/value", max_len=MAX_OPTION_VALUE)
            self._text(
                option.get("description"),
                f"{where}/description",
                max_len=MAX_OPTION_DESCRIPTION,
                plain_only=True,
                required=False,
            )
            self._string(option.get("url"), f"{where}/url", max_len=MAX_URL, required=False)

    def _image_source(self, value: dict[str, Any], pointer: str) -> None:
        has_url = "image_url" in value
        has_file = "slack_file" in value
        if has_url == has_file:
            self._fail("must provide exactly one of image_url or slack_file", pointer)
        if has_url:
            self._string(value["image_url"], f"{pointer}/image_url", max_len=MAX_URL)
        if has_file:
            slack_file = value["slack_file"]
            if not isinstance(slack_file, dict) or not ({"url", "id"} & slack_file.keys()):
                self._fail("slack_file must be an object with url or id", f"{pointer}/slack_file")
        self._string(value.get("alt_text"), f"{pointer}/alt_text", max_len=MAX_ALT_TEXT)

    # -- elements -----------------------------------------------------------------------------

    def _element(self, value: object, pointer: str, allowed: frozenset[str]) -> None:
        if not isinstance(value, dict):
            self._fail("must provide an object", pointer)
            return
        kind = value.get("type")
        if not isinstance(kind, str) or kind not in allowed:
            self._fail(f"unsupported element type {kind!r} here", f"{pointer}/type")
            return
        if kind == "image":
            self._image_source(value, pointer)
            return
        self._action_id(value, pointer)
        self._confirm(value.get("confirm"), f"{pointer}/confirm")
        if kind in ("button", "workflow_button"):
            self._text(value.get("text"), f"{pointer}/text", max_len=MAX_BUTTON_TEXT, plain_only=True)
            self._string(value.get("value"), f"{pointer}/value", max_len=MAX_BUTTON_VALUE, required=False)
            self._string(value.get("url"), f"{pointer}/url", max_len=MAX_URL, required=False)
            self._string(
                value.get("accessibility_label"),
                f"{pointer}/accessibility_label",
                max_len=MAX_ACCESSIBILITY_LABEL,
                required=False,
            )
            if "style" in value and value["style"] not in _BUTTON_STYLES:
                self._fail("style must be primary or danger", f"{pointer}/style")
        elif kind == "overflow":
            self._options(
                value.get("options"), f"{pointer}/options", max_len=MAX_OVERFLOW_OPTIONS, plain_only=True
            )
        elif kind in ("checkboxes", "radio_buttons"):
            self._options(
                value.get("options"), f"{pointer}/options", max_len=MAX_CHOICE_OPTIONS, plain_only=False
            )
        elif kind in _SELECT_TYPES:
            self._text(
                value.get("placeholder"),
                f"{pointer}/placeholder",
                max_len=MAX_PLACEHOLDER,
                plain_only=True,
                required=False,
            )
            if kind in ("static_select", "multi_static_select"):
                if "option_groups" in value:
                    groups = self._list(
                        value["option_groups"], f"{pointer}/option_groups", min_len=1, max_len=100
                    )
                    for i, group in enumerate(groups or []):
                        opts = group.get("options") if isinstance(group, dict) else None
                        self._options(
                            opts,
                            f"{pointer}/option_groups/{i}/options",
                            max_len=MAX_SELECT_OPTIONS,
                            plain_only=True,
                        )
                else:
                    self._options(
                        value.get("options"),
                        f"{pointer}/options",
                        max_len=MAX_SELECT_OPTIONS,
                        plain_only=True,
                    )
        elif kind in _PICKER_TYPES:
            self._text(
                value.get("placeholder"),
                f"{pointer}/placeholder",
                max_len=MAX_PLACEHOLDER,
                plain_only=True,
                required=False,
            )

    # -- blocks -------------------------------------------------------------------------------

    def check_message(self, blocks: list[Any], *, max_blocks: int) -> None:
        if len(blocks) > max_blocks:
            self._fail(f"no more than {max_blocks} items allowed", "/blocks")
        for i, block in enumerate(blocks):
            self._block(block, f"/blocks/{i}")
        if self._markdown_total > MAX_MARKDOWN_TOTAL:
            self._fail(
                f"markdown blocks must total less than {MAX_MARKDOWN_TOTAL + 1} characters per message",
                "/blocks",
            )

    def _block(self, block: object, pointer: str) -> None:
        if not isinstance(block, dict):
            self._fail("must provide an object", pointer)
            return
        kind = block.get("type")
        if not isinstance(kind, str) or kind not in BLOCK_TYPES:
            self._fail(f"unsupported block type {kind!r}", f"{pointer}/type")
            return
        self._block_id(block, pointer)
        if kind == "header":
            self._text(block.get("text"), f"{pointer}/text", max_len=MAX_HEADER_TEXT, plain_only=True)
        elif kind == "section":
            self._section(block, pointer)
        elif kind == "context":
            elements = self._list(
                block.get("elements"), f"{pointer}/elements", min_len=1, max_len=MAX_CONTEXT_ELEMENTS
            )
            for i, element in enumerate(elements or []):
                where = f"{pointer}/elements/{i}"
                if isinstance(element, dict) and element.get("type") in _TEXT_TYPES:
                    self._text(element, where, max_len=MAX_SECTION_TEXT)
                else:
                    self._element(element, where, frozenset({"image"}))
        elif kind == "actions":
            elements = self._list(
                block.get("elements"), f"{pointer}/elements", min_len=1, max_len=MAX_ACTIONS_ELEMENTS
            )
            for i, element in enumerate(elements or []):
                self._element(element, f"{pointer}/elements/{i}", INTERACTIVE_TYPES)
        elif kind == "image":
            self._image_source(block, pointer)
            self._text(
                block.get("title"),
                f"{pointer}/title",
                max_len=MAX_IMAGE_TITLE,
                plain_only=True,
                required=False,
            )
        elif kind == "rich_text":
            elements = self._list(block.get("elements"), f"{pointer}/elements", min_len=1, max_len=100)
            for i, element in enumerate(elements or []):
                where = f"{pointer}/elements/{i}"
                if not isinstance(element, dict) or element.get("type") not in RICH_TEXT_ELEMENT_TYPES:
                    self._fail("unsupported rich_text element", where)
                elif not isinstance(element.get("elements"), list):
                    self._fail("must provide an array", f"{where}/elements")
        elif kind == "markdown":
            text = self._string(block.get("text"), f"{pointer}/text", max_len=MAX_MARKDOWN_TOTAL)
            self._markdown_total += len(text or "")

    def _section(self, block: dict[str, Any], pointer: str) -> None:
        has_text = "text" in block
        has_fields = "fields" in block
        if not has_text and not has_fields:
            self._fail("section needs text or fields", pointer)
        if has_text:
            self._text(block["text"], f"{pointer}/text", max_len=MAX_SECTION_TEXT)
        if has_fields:
            fields = self._list(block["fields"], f"{pointer}/fields", min_len=1, max_len=MAX_SECTION_FIELDS)
            for i, field in enumerate(fields or []):
                self._text(field, f"{pointer}/fields/{i}", max_len=MAX_SECTION_FIELD_TEXT)
        if "accessory" in block:
            self._element(block["accessory"], f"{pointer}/accessory", _ACCESSORY_TYPES)

// runctl sandbox page: renders the Slack stand-in's state the way Slack would and sends what a person does
// (slash commands, clicks) to the sandbox API, which signs and delivers it to the bot exactly as Slack does.
// Everything is built with DOM calls and textContent: nothing the bot sends is ever parsed as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);

  const state = {
    config: null,
    viewer: null,
    data: null,
    renderedKey: "",
    expanded: new Set(),
    dismissed: new Set(),
    notices: [],
    pollGeneration: 0,
    pollAbort: null,
    dmSeen: new Map(),
    ac: { items: [], index: 0, open: false, exact: null },
  };

  // ---------------------------------------------------------------------------------------------------
  // small helpers

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  function tsNumber(ts) {
    return Number(ts);
  }

  const ENTITIES = { lt: "<", gt: ">", amp: "&" };
  function decodeEntities(text) {
    return text.replace(/&(lt|gt|amp);/g, (_, name) => ENTITIES[name]);
  }

  const AVATAR_COLORS = ["#e8912d", "#2eb67d", "#36c5f0", "#e01e5a", "#9b59b6", "#1264a3", "#d35400", "#16a085"];
  function avatarFor(user, isBot) {
    const node = el("div", "avatar" + (isBot ? " bot" : ""));
    const name = (user && (user.real_name || user.name)) || "?";
    node.textContent = name.trim().charAt(0).toUpperCase();
    if (!isBot) {
      let hash = 0;
      const key = (user && user.id) || name;
      for (let i = 0; i < key.length; i += 1) hash = (hash * 31 + key.charCodeAt(i)) >>> 0;
      node.style.background = AVATAR_COLORS[hash % AVATAR_COLORS.length];
    }
    node.setAttribute("aria-hidden", "true");
    return node;
  }

  const SVG = "http://www.w3.org/2000/svg";
  function eyeIcon() {
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 20 20");
    svg.setAttribute("class", "eye");
    svg.setAttribute("aria-hidden", "true");
    const outline = document.createElementNS(SVG, "path");
    outline.setAttribute("d", "M10 4C5.5 4 2.1 7.2 1 10c1.1 2.8 4.5 6 9 6s7.9-3.2 9-6c-1.1-2.8-4.5-6-9-6zm0 10a4 4 0 1 1 0-8 4 4 0 0 1 0 8z");
    outline.setAttribute("fill", "currentColor");
    const pupil = document.createElementNS(SVG, "circle");
    pupil.setAttribute("cx", "10");
    pupil.setAttribute("cy", "10");
    pupil.setAttribute("r", "2");
    pupil.setAttribute("fill", "currentColor");
    svg.append(outline, pupil);
    return svg;
  }

  function safeUrl(url) {
    return /^(https?:|mailto:)/i.test(url) ? url : null;
  }

  // ---------------------------------------------------------------------------------------------------
  // time, in the viewer's own time zone (as Slack shows it)

  const formatters = new Map();
  function formatter(tz, options) {
    const key = tz + JSON.stringify(options);
    if (!formatters.has(key)) {
      try {
        formatters.set(key, new Intl.DateTimeFormat("en-US", { timeZone: tz, ...options }));
      } catch (error) {
        formatters.set(key, new Intl.DateTimeFormat("en-US", options));
      }
    }
    return formatters.get(key);
  }

  function viewerTz() {
    const person = currentPerson();
    return (person && person.tz) || "UTC";
  }

  function formatTime(ts) {
    return formatter(viewerTz(), { hour: "numeric", minute: "2-digit" }).format(new Date(tsNumber(ts) * 1000));
  }

  function formatFull(ts) {
    return formatter(viewerTz(), { dateStyle: "full", timeStyle: "long" }).format(new Date(tsNumber(ts) * 1000));
  }

  function dayKey(ts) {
    return formatter(viewerTz(), { year: "numeric", month: "2-digit", day: "2-digit" }).format(
      new Date(tsNumber(ts) * 1000),
    );
  }

  function dayLabel(ts) {
    const key = dayKey(ts);
    const now = Date.now() / 1000;
    if (key === dayKey(now)) return "Today";
    if (key === dayKey(now - 86400)) return "Yesterday";
    return formatter(viewerTz(), { weekday: "long", month: "long", day: "numeric" }).format(
      new Date(tsNumber(ts) * 1000),
    );
  }

  function slackDate(epoch, format, fallback) {
    const when = new Date(Number(epoch) * 1000);
    if (Number.isNaN(when.getTime())) return fallback;
    const tz = viewerTz();
    const parts = {
      "{date_num}": formatter(tz, { year: "numeric", month: "2-digit", day: "2-digit" }).format(when),
      "{date}": formatter(tz, { year: "numeric", month: "long", day: "numeric" }).format(when),
      "{date_short}": formatter(tz, { year: "numeric", month: "short", day: "numeric" }).format(when),
      "{date_long}": formatter(tz, { weekday: "long", year: "numeric", month: "long", day: "numeric" }).format(when),
      "{time}": formatter(tz, { hour: "numeric", minute: "2-digit" }).format(when),
      "{time_secs}": formatter(tz, { hour: "numeric", minute: "2-digit", second: "2-digit" }).format(when),
    };
    parts["{date_pretty}"] = parts["{date}"];
    parts["{date_short_pretty}"] = parts["{date_short}"];
    parts["{date_long_pretty}"] = parts["{date_long}"];
    return format.replace(/\{[a-z_]+\}/g, (token) => (token in parts ? parts[token] : token));
  }

  // ---------------------------------------------------------------------------------------------------
  // emoji shortcodes the bot is likely to use (unknown ones stay as typed, as in Slack without the emoji)

  const EMOJI = {
    "+1": "👍", "-1": "👎", thumbsup: "👍", thumbsdown: "👎", white_check_mark: "✅", heavy_check_mark: "✔️",
    ballot_box_with_check: "☑️", x: "❌", negative_squared_cross_mark: "❎", warning: "⚠️", no_entry: "⛔",
    no_entry_sign: "🚫", stop_sign: "🛑", octagonal_sign: "🛑", rotating_light: "🚨", sos: "🆘",
    exclamation: "❗", heavy_exclamation_mark: "❗", bangbang: "‼️", question: "❓", grey_question: "❔",
    information_source: "ℹ️", bulb: "💡", hourglass: "⌛", hourglass_flowing_sand: "⏳", stopwatch: "⏱️",
    timer_clock: "⏲️", alarm_clock: "⏰", clock: "🕐", calendar: "📆", date: "📅", spiral_calendar_pad: "🗓️",
    rocket: "🚀", zzz: "💤", sleeping: "😴", sleepy: "😪", fire: "🔥", zap: "⚡", sparkles: "✨", star: "⭐",
    tada: "🎉", wave: "👋", eyes: "👀", raised_hand: "✋", hand: "✋", point_right: "👉", point_left: "👈",
    point_up: "☝️", point_down: "👇", handshake: "🤝", pray: "🙏", muscle: "💪", robot_face: "🤖", brain: "🧠",
    moneybag: "💰", money_with_wings: "💸", dollar: "💵", heavy_dollar_sign: "💲", receipt: "🧾",
    credit_card: "💳", chart_with_upwards_trend: "📈", chart_with_downwards_trend: "📉", bar_chart: "📊",
    lock: "🔒", unlock: "🔓", closed_lock_with_key: "🔐", key: "🔑", shield: "🛡️", lock_with_ink_pen: "🔏",
    computer: "💻", desktop_computer: "🖥️", gear: "⚙️", wrench: "🔧", hammer: "🔨",
    hammer_and_wrench: "🛠️", nut_and_bolt: "🔩", electric_plug: "🔌", battery: "🔋", satellite: "📡",
    cloud: "☁️", snowflake: "❄️", sunny: "☀️", crescent_moon: "🌙", construction: "🚧",
    building_construction: "🏗️", memo: "📝", pencil: "📝", pencil2: "✏️", page_facing_up: "📄",
    clipboard: "📋", package: "📦", floppy_disk: "💾", cd: "💿", file_folder: "📁", open_file_folder: "📂",
    card_index_dividers: "🗂️", inbox_tray: "📥", outbox_tray: "📤", mag: "🔍", mag_right: "🔎", link: "🔗",
    paperclip: "📎", pushpin: "📌", round_pushpin: "📍", label: "🏷️", bookmark: "🔖", books: "📚",
    scroll: "📜", bell: "🔔", no_bell: "🔕", speech_balloon: "💬", thought_balloon: "💭", thread: "🧵",
    test_tube: "🧪", microscope: "🔬", dna: "🧬", abacus: "🧮", broom: "🧹", wastebasket: "🗑️",
    recycle: "♻️", arrows_counterclockwise: "🔄", repeat: "🔁", arrow_forward: "▶️", arrow_backward: "◀️",
    double_vertical_bar: "⏸️", black_square_for_stop: "⏹️", fast_forward: "⏩", rewind: "⏪",
    arrow_right: "➡️", arrow_left: "⬅️", arrow_up: "⬆️", arrow_down: "⬇️", arrow_up_small: "🔼",
    arrow_down_small: "🔽", heavy_plus_sign: "➕", heavy_minus_sign: "➖", heavy_multiplication_x: "✖️",
    red_circle: "🔴", large_green_circle: "🟢", green_circle: "🟢", yellow_circle: "🟡",
    large_orange_circle: "🟠", orange_circle: "🟠", large_blue_circle: "🔵", blue_circle: "🔵",
    large_purple_circle: "🟣", white_circle: "⚪", black_circle: "⚫", large_orange_diamond: "🔶",
    large_blue_diamond: "🔷", small_orange_diamond: "🔸", small_blue_diamond: "🔹", red_square: "🟥",
    green_square: "🟩", yellow_square: "🟨", white_large_square: "⬜", black_large_square: "⬛",
    ok: "🆗", new: "🆕", free: "🆓", up: "🆙", cool: "🆒", hundred: "💯", skull: "💀", ghost: "👻",
    coffee: "☕", beers: "🍻", trophy: "🏆", medal: "🏅", checkered_flag: "🏁", triangular_flag_on_post: "🚩",
    crossed_flags: "🎌", bust_in_silhouette: "👤", busts_in_silhouette: "👥", man_technologist: "👨‍💻",
    woman_technologist: "👩‍💻", spy: "🕵️", hourglass_done: "⌛", mailbox: "📫", email: "📧", envelope: "✉️",
    incoming_envelope: "📨", loudspeaker: "📢", mega: "📣", chart: "💹", heavy_heart_exclamation: "❣️",
    heart: "❤️", broken_heart: "💔", smile: "😄", slightly_smiling_face: "🙂", thinking_face: "🤔",
    grimacing: "😬", sweat_smile: "😅", joy: "😂", cry: "😢", scream: "😱", sunglasses: "😎",
  };

  function appendWithEmoji(parent, text) {
    const re = /:([a-z0-9_+'-]+):(?::skin-tone-[2-6]:)?/g;
    let last = 0;
    let match;
    while ((match = re.exec(text)) !== null) {
      const glyph = EMOJI[match[1]];
      if (!glyph) continue;
      if (match.index > last) parent.appendChild(document.createTextNode(text.slice(last, match.index)));
      const span = el("span", "emoji", glyph);
      span.title = `:${match[1]}:`;
      parent.appendChild(span);
      last = match.index + match[0].length;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  // ---------------------------------------------------------------------------------------------------
  // Slack mrkdwn: *bold* _italic_ ~strike~ `code` ```pre``` > quote, <@U…> <#C…> <!here> <url|label>, :emoji:

  function isWordChar(ch) {
    return ch !== undefined && /[\p{L}\p{N}]/u.test(ch);
  }

  function isSpace(ch) {
    return ch === undefined || /\s/.test(ch);
  }

  function findClosing(text, open, marker) {
    for (let k = open + 2; k < text.length; k += 1) {
      const ch = text[k];
      if (ch === "\n") return -1;
      if (ch === marker && !isSpace(text[k - 1]) && !isWordChar(text[k + 1])) return k;
    }
    return -1;
  }

  function renderAngle(inner, ctx) {
    const bar = inner.indexOf("|");
    const target = bar >= 0 ? inner.slice(0, bar) : inner;
    const label = bar >= 0 ? inner.slice(bar + 1) : "";
    if (target.startsWith("@")) {
      const id = target.slice(1);
      const user = ctx.users[id];
      const name = user ? user.name : label || id;
      const span = el("span", "mention" + (id === state.viewer ? " me" : ""), "@" + decodeEntities(name));
      span.dataset.userId = id;
      return span;
    }
    if (target.startsWith("#")) {
      const id = target.slice(1);
      const name = ctx.channels[id] || label || id;
      const span = el("span", "mention channel-mention", "#" + decodeEntities(name));
      span.dataset.channelId = id;
      return span;
    }
    if (target.startsWith("!")) {
      const special = target.slice(1);
      if (["here", "channel", "everyone"].includes(special)) return el("span", "mention", "@" + special);
      if (special.startsWith("subteam^")) return el("span", "mention", decodeEntities(label || "@group"));
      if (special.startsWith("date^")) {
        const pieces = special.split("^");
        const fallback = decodeEntities(label || "");
        const text = slackDate(pieces[1], pieces[2] || "{date}", fallback);
        const link = pieces[3] && safeUrl(pieces[3]);
        if (link) {
          const a = el("a", null, text);
          a.href = link;
          a.target = "_blank";
          a.rel = "noopener noreferrer";
          return a;
        }
        return el("span", "slack-date", text);
      }
      return document.createTextNode(decodeEntities(label || ""));
    }
    const url = safeUrl(decodeEntities(target));
    const shown = decodeEntities(label || target);
    if (!url) return document.createTextNode(shown);
    const a = el("a", null, shown);
    a.href = url;
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    return a;
  }

  const EMPHASIS = { "*": "b", _: "i", "~": "s" };

  function renderInline(text, parent, ctx) {
    let buffer = "";
    const flush = () => {
      if (buffer) {
        appendWithEmoji(parent, decodeEntities(buffer));
        buffer = "";
      }
    };
    let i = 0;
    while (i < text.length) {
      const ch = text[i];
      if (ch === "`") {
        const end = text.indexOf("`", i + 1);
        if (end > i + 1) {
          flush();
          parent.appendChild(el("code", null, decodeEntities(text.slice(i + 1, end))));
          i = end + 1;
          continue;
        }
      } else if (ch === "<") {
        const end = text.indexOf(">", i + 1);
        if (end > i + 1 && !text.slice(i + 1, end).includes("<")) {
          flush();
          parent.appendChild(renderAngle(text.slice(i + 1, end), ctx));
          i = end + 1;
          continue;
        }
      } else if (ch in EMPHASIS && !isWordChar(text[i - 1]) && !isSpace(text[i + 1]) && text[i + 1] !== ch) {
        const end = findClosing(text, i, ch);
        if (end > 0) {
          flush();
          const node = el(EMPHASIS[ch]);
          renderInline(text.slice(i + 1, end), node, ctx);
          parent.appendChild(node);
          i = end + 1;
          continue;
        }
      }
      buffer += ch;
      i += 1;
    }
    flush();
  }

  function renderLines(text, parent, ctx) {
    const lines = text.split("\n");
    let quote = null;
    let first = true;
    for (const line of lines) {
      const quoted = /^(&gt;|>)\s?/.exec(line);
      if (quoted) {
        if (!quote) {
          quote = el("blockquote");
          parent.appendChild(quote);
        } else {
          quote.appendChild(el("br"));
        }
        renderInline(line.slice(quoted[0].length), quote, ctx);
        first = false;
        continue;
      }
      if (quote) {
        quote = null;
        first = true;
      }
      if (!first) parent.appendChild(el("br"));
      renderInline(line, parent, ctx);
      first = false;
    }
  }

  function renderMrkdwn(text, ctx, tag) {
    const root = el(tag || "div", "mrkdwn");
    const re = /```([\s\S]*?)```/g;
    let last = 0;
    let match;
    while ((match = re.exec(text)) !== null) {
      if (match.index > last) renderLines(text.slice(last, match.index).replace(/\n$/, ""), root, ctx);
      const code = match[1].replace(/^\n/, "").replace(/\n$/, "");
      root.appendChild(el("pre", null, decodeEntities(code)));
      last = match.index + match[0].length;
    }
    if (last < text.length) renderLines(text.slice(last).replace(/^\n/, ""), root, ctx);
    return root;
  }

  function renderPlain(text, emoji, tag) {
    const node = el(tag || "span", "plain");
    if (emoji === false) node.textContent = text;
    else appendWithEmoji(node, text);
    return node;
  }

  function renderText(obj, ctx, tag) {
    if (!obj || typeof obj.text !== "string") return el(tag || "span");
    if (obj.type === "mrkdwn") return renderMrkdwn(obj.text, ctx, tag);
    return renderPlain(obj.text, obj.emoji, tag);
  }

  // ---------------------------------------------------------------------------------------------------
  // Block Kit

  function imageNode(src, alt, className) {
    if (!src) {
      const placeholder = el("span", "image-placeholder", `🖼 ${alt || "image"} (not loaded: only local files are shown)`);
      return placeholder;
    }
    const img = el("img", className || null);
    img.src = src;
    img.alt = alt || "";
    img.loading = "lazy";
    return img;
  }

  function renderElement(element, block, ctx) {
    switch (element.type) {
      case "button": {
        const button = el("button", "bk-button");
        button.type = "button";
        if (element.style === "primary") button.classList.add("bk-primary");
        if (element.style === "danger") button.classList.add("bk-danger");
        appendWithEmoji(button, element.text ? element.text.text : "");
        button.dataset.actionId = element.action_id || "";
        button.dataset.blockId = block.block_id || "";
        if (element.value !== undefined) button.dataset.value = element.value;
        if (element.accessibility_label) button.setAttribute("aria-label", element.accessibility_label);
        button.addEventListener("click", () => act(ctx.message, block, element, undefined, button));
        return button;
      }
      case "static_select":
      case "overflow":
      case "radio_buttons": {
        const select = el("select", "bk-select");
        select.dataset.actionId = element.action_id || "";
        const placeholder = el("option", null, element.placeholder ? element.placeholder.text : element.type === "overflow" ? "⋯" : "Select…");
        placeholder.value = "";
        placeholder.selected = true;
        placeholder.disabled = true;
        select.appendChild(placeholder);
        const groups = element.option_groups || [{ options: element.options || [] }];
        for (const group of groups) {
          let target = select;
          if (group.label) {
            target = el("optgroup");
            target.label = group.label.text;
            select.appendChild(target);
          }
          for (const option of group.options || []) {
            const node = el("option", null, option.text ? option.text.text : option.value);
            node.value = option.value;
            if (element.initial_option && element.initial_option.value === option.value) node.selected = true;
            target.appendChild(node);
          }
        }
        select.addEventListener("change", () => act(ctx.message, block, element, select.value, select));
        return select;
      }
      case "image":
        return imageNode(element.sandbox_src, element.alt_text);
      case "plain_text":
      case "mrkdwn":
        return renderText(element, ctx, "span");
      default:
        return el("span", "unsupported", `[${element.type} element]`);
    }
  }

  function renderRichText(block, ctx) {
    const root = el("div", "block block-rich-text mrkdwn");
    const inline = (elements, parent) => {
      for (const item of elements || []) {
        let node;
        if (item.type === "text") {
          node = el("span");
          appendWithEmoji(node, item.text || "");
          const style = item.style || {};
          if (style.code) node = wrap("code", node);
          if (style.bold) node = wrap("b", node);
          if (style.italic) node = wrap("i", node);
          if (style.strike) node = wrap("s", node);
        } else if (item.type === "link") {
          const url = safeUrl(item.url || "");
          node = url ? el("a", null, item.text || item.url) : el("span", null, item.text || item.url);
          if (url) {
            node.href = url;
            node.target = "_blank";
            node.rel = "noopener noreferrer";
          }
        } else if (item.type === "user") {
          node = renderAngle("@" + item.user_id, ctx);
        } else if (item.type === "channel") {
          node = renderAngle("#" + item.channel_id, ctx);
        } else if (item.type === "emoji") {
          node = el("span", "emoji", item.unicode ? String.fromCodePoint(...item.unicode.split("-").map((h) => parseInt(h, 16))) : EMOJI[item.name] || `:${item.name}:`);
        } else if (item.type === "broadcast") {
          node = el("span", "mention", "@" + item.range);
        } else {
          node = el("span", "unsupported", `[${item.type}]`);
        }
        parent.appendChild(node);
      }
    };
    const wrap = (tag, child) => {
      const outer = el(tag);
      outer.appendChild(child);
      return outer;
    };
    for (const part of block.elements || []) {
      if (part.type === "rich_text_section") {
        const div = el("div", "rich-section plain");
        inline(part.elements, div);
        root.appendChild(div);
      } else if (part.type === "rich_text_preformatted") {
        const pre = el("pre");
        inline(part.elements, pre);
        root.appendChild(pre);
      } else if (part.type === "rich_text_quote") {
        const quote = el("blockquote", "plain");
        inline(part.elements, quote);
        root.appendChild(quote);
      } else if (part.type === "rich_text_list") {
        const list = el(part.style === "ordered" ? "ol" : "ul", "rich-text-list");
        for (const section of part.elements || []) {
          const li = el("li", "plain");
          inline(section.elements, li);
          list.appendChild(li);
        }
        root.appendChild(list);
      }
    }
    return root;
  }

  function renderBlock(block, ctx) {
    switch (block.type) {
      case "header": {
        const node = el("div", "block block-header");
        node.appendChild(renderText(block.text, ctx, "span"));
        return node;
      }
      case "section": {
        const node = el("div", "block block-section");
        const main = el("div", "section-main");
        if (block.text) main.appendChild(renderText(block.text, ctx));
        if (block.fields && block.fields.length) {
          const fields = el("div", "fields");
          for (const field of block.fields) {
            const cell = el("div", "field");
            cell.appendChild(renderText(field, ctx));
            fields.appendChild(cell);
          }
          main.appendChild(fields);
        }
        node.appendChild(main);
        if (block.accessory) {
          const accessory = el("div", "accessory");
          accessory.appendChild(renderElement(block.accessory, block, ctx));
          node.appendChild(accessory);
        }
        return node;
      }
      case "context": {
        const node = el("div", "block block-context");
        for (const element of block.elements || []) {
          if (element.type === "image") node.appendChild(imageNode(element.sandbox_src, element.alt_text));
          else node.appendChild(renderText(element, ctx, "span"));
        }
        return node;
      }
      case "divider":
        return el("hr", "block block-divider");
      case "actions": {
        const node = el("div", "block block-actions");
        for (const element of block.elements || []) node.appendChild(renderElement(element, block, ctx));
        return node;
      }
      case "image": {
        const node = el("div", "block block-image");
        const figure = el("figure");
        if (block.title) figure.appendChild(el("div", "image-title", block.title.text));
        figure.appendChild(imageNode(block.sandbox_src, block.alt_text));
        node.appendChild(figure);
        return node;
      }
      case "rich_text":
        return renderRichText(block, ctx);
      case "markdown": {
        const node = el("div", "block markdown-block");
        node.appendChild(renderMrkdwn(block.text || "", ctx));
        return node;
      }
      default:
        return el("div", "block unsupported", `[${block.type} block]`);
    }
  }

  function renderBlocks(blocks, ctx) {
    const root = el("div", "blocks");
    for (const block of blocks) {
      const node = renderBlock(block, ctx);
      if (block.type) node.dataset.blockType = block.type;
      if (block.block_id) node.dataset.blockId = block.block_id;
      root.appendChild(node);
    }
    return root;
  }

  const ATTACHMENT_COLORS = { good: "#2eb886", warning: "#daa038", danger: "#a30200" };

  function renderAttachment(attachment, ctx) {
    const wrapper = el("div", "attachment-wrapper");
    if (attachment.pretext) wrapper.appendChild(renderMrkdwn(attachment.pretext, ctx));
    const node = el("div", "attachment");
    const color = ATTACHMENT_COLORS[attachment.color] || attachment.color;
    if (typeof color === "string" && /^#?[0-9a-f]{6}$/i.test(color)) {
      node.style.borderLeftColor = color.startsWith("#") ? color : "#" + color;
    }
    if (attachment.author_name) node.appendChild(el("div", "attachment-author", attachment.author_name));
    if (attachment.title) {
      const title = el("div", "attachment-title");
      const link = attachment.title_link && safeUrl(attachment.title_link);
      if (link) {
        const a = el("a", null, attachment.title);
        a.href = link;
        a.target = "_blank";
        a.rel = "noopener noreferrer";
        title.appendChild(a);
      } else {
        title.textContent = attachment.title;
      }
      node.appendChild(title);
    }
    if (attachment.text) node.appendChild(renderMrkdwn(attachment.text, ctx));
    if (attachment.fields && attachment.fields.length) {
      const fields = el("div", "fields");
      for (const field of attachment.fields) {
        const cell = el("div", "field");
        if (field.title) cell.appendChild(el("b", null, field.title));
        if (field.value) cell.appendChild(renderMrkdwn(String(field.value), ctx));
        fields.appendChild(cell);
      }
      node.appendChild(fields);
    }
    if (attachment.blocks && attachment.blocks.length) node.appendChild(renderBlocks(attachment.blocks, ctx));
    if (attachment.image_url) node.appendChild(imageNode(attachment.sandbox_image_url, attachment.fallback));
    if (attachment.footer) node.appendChild(el("div", "attachment-footer", attachment.footer));
    if (!node.childNodes.length && attachment.fallback) node.appendChild(renderPlain(attachment.fallback));
    wrapper.appendChild(node);
    return wrapper;
  }

  function renderFiles(files) {
    const root = el("div", "files");
    for (const file of files) {
      if (file.is_image && file.src) {
        const figure = el("figure", "file-image");
        figure.appendChild(el("div", "file-title", file.title || file.name));
        figure.appendChild(imageNode(file.src, file.alt_txt || file.title || file.name));
        root.appendChild(figure);
      } else {
        const card = el(file.src ? "a" : "div", "file-card");
        if (file.src) card.href = file.src + "?download=1";
        card.appendChild(el("span", "file-icon", (file.name.split(".").pop() || "FILE").slice(0, 4).toUpperCase()));
        card.appendChild(el("span", "file-name", file.title || file.name || "file"));
        root.appendChild(card);
      }
    }
    return root;
  }

  // ---------------------------------------------------------------------------------------------------
  // messages, threads, conversations

  function authorOf(message) {
    if (message.local) return { id: "USLACKBOT", name: "Slackbot", real_name: "Slackbot", is_bot: true };
    const users = state.data ? state.data.users : {};
    return users[message.user] || { id: message.user, name: message.user, real_name: message.user };
  }

  function renderMessage(message, ctx, compact) {
    const author = authorOf(message);
    const isBot = Boolean(message.is_bot || author.is_bot);
    const node = el("div", "message");
    node.dataset.ts = message.ts;
    node.dataset.channel = message.channel || "";
    if (message.ephemeral) node.classList.add("ephemeral");
    if (message.local) node.classList.add("local-notice");
    if (compact) node.classList.add("compact");

    const gutter = el("div", "gutter");
    gutter.appendChild(avatarFor(author, isBot && !message.local));
    gutter.appendChild(el("div", "compact-time", formatTime(message.ts)));
    node.appendChild(gutter);

    const content = el("div", "content");
    if (message.ephemeral) {
      const note = el("div", "ephemeral-note");
      note.appendChild(eyeIcon());
      note.appendChild(el("span", "ephemeral-label", "Only visible to you"));
      const dismiss = el("button", "dismiss", "Dismiss message");
      dismiss.type = "button";
      dismiss.addEventListener("click", () => {
        state.dismissed.add(message.ts);
        state.renderedKey = "";
        render();
      });
      note.appendChild(dismiss);
      content.appendChild(note);
    }
    const meta = el("div", "meta");
    meta.appendChild(el("span", "author", isBot ? author.name : author.real_name || author.name));
    if (isBot) meta.appendChild(el("span", "app-badge", "APP"));
    const time = el("time", "time", formatTime(message.ts));
    time.title = formatFull(message.ts);
    time.dateTime = new Date(tsNumber(message.ts) * 1000).toISOString();
    meta.appendChild(time);
    content.appendChild(meta);

    const messageCtx = { ...ctx, message };
    const body = el("div", "message-body");
    if (message.blocks && message.blocks.length) body.appendChild(renderBlocks(message.blocks, messageCtx));
    else if (message.text) body.appendChild(renderMrkdwn(message.text, messageCtx));
    if (message.edited) {
      const texts = body.querySelectorAll(".mrkdwn, .plain");
      (texts.length ? texts[texts.length - 1] : body).appendChild(el("span", "edited", "(edited)"));
    }
    content.appendChild(body);
    if (message.attachments && message.attachments.length) {
      for (const attachment of message.attachments) content.appendChild(renderAttachment(attachment, messageCtx));
    }
    if (message.files && message.files.length) content.appendChild(renderFiles(message.files));
    node.appendChild(content);
    return node;
  }

  function renderThread(parent, replies, ctx, content) {
    const key = `${parent.channel}:${parent.ts}`;
    const count = replies.filter((r) => !r.ephemeral).length;
    const summary = el("button", "thread-summary");
    summary.type = "button";
    summary.dataset.threadTs = parent.ts;
    const seen = new Set();
    for (const reply of replies) {
      const author = authorOf(reply);
      if (seen.has(author.id) || seen.size >= 3) continue;
      seen.add(author.id);
      summary.appendChild(avatarFor(author, Boolean(reply.is_bot)));
    }
    const label = count === 1 ? "1 reply" : `${count} replies`;
    summary.appendChild(el("span", "thread-count", count ? label : "Thread"));
    const latest = replies[replies.length - 1];
    if (latest) summary.appendChild(el("span", "thread-last", `Last reply ${formatTime(latest.ts)}`));
    summary.setAttribute("aria-expanded", state.expanded.has(key) ? "true" : "false");
    summary.addEventListener("click", () => {
      if (state.expanded.has(key)) state.expanded.delete(key);
      else state.expanded.add(key);
      state.renderedKey = "";
      render();
    });
    content.appendChild(summary);
    if (state.expanded.has(key)) {
      const list = el("div", "thread-replies");
      list.dataset.threadTs = parent.ts;
      for (const reply of replies) list.appendChild(renderMessage(reply, ctx, false));
      content.appendChild(list);
    }
  }

  function renderConversation(container, conversation, notices, emptyText) {
    const wasAtBottom = container.scrollHeight - container.scrollTop - container.clientHeight < 48;
    const previousTop = container.scrollTop;
    const ctx = { users: state.data.users, channels: state.data.channels };
    const messages = conversation ? conversation.messages : [];
    const ephemerals = conversation ? conversation.ephemerals.filter((e) => !state.dismissed.has(e.ts)) : [];
    const parents = new Set(messages.map((m) => m.ts));
    const threadEphemerals = new Map();
    const timeline = [...messages, ...notices];
    for (const ephemeral of ephemerals) {
      if (ephemeral.thread_ts && parents.has(ephemeral.thread_ts)) {
        if (!threadEphemerals.has(ephemeral.thread_ts)) threadEphemerals.set(ephemeral.thread_ts, []);
        threadEphemerals.get(ephemeral.thread_ts).push(ephemeral);
      } else {
        timeline.push(ephemeral);
      }
    }
    timeline.sort((a, b) => tsNumber(a.ts) - tsNumber(b.ts));

    const fragment = document.createDocumentFragment();
    if (!timeline.length) fragment.appendChild(el("div", "empty", emptyText));
    let previous = null;
    let lastDay = null;
    for (const message of timeline) {
      const day = dayKey(message.ts);
      if (day !== lastDay) {
        const divider = el("div", "day-divider");
        divider.appendChild(el("span", null, dayLabel(message.ts)));
        fragment.appendChild(divider);
        lastDay = day;
        previous = null;
      }
      const replies = [...(message.replies || []), ...(threadEphemerals.get(message.ts) || [])].sort(
        (a, b) => tsNumber(a.ts) - tsNumber(b.ts),
      );
      const compact =
        previous !== null &&
        !message.ephemeral &&
        !previous.ephemeral &&
        !message.local &&
        !(previous.replies && previous.replies.length) &&
        previous.user === message.user &&
        tsNumber(message.ts) - tsNumber(previous.ts) < 300;
      const node = renderMessage(message, ctx, compact);
      if (replies.length) renderThread(message, replies, ctx, node.querySelector(".content"));
      fragment.appendChild(node);
      previous = message;
    }
    container.replaceChildren(fragment);
    container.scrollTop = wasAtBottom ? container.scrollHeight : previousTop;
  }

  function currentPerson() {
    if (!state.config) return null;
    return state.config.people.find((p) => p.id === state.viewer) || null;
  }

  function render() {
    if (!state.data || state.data.viewer !== state.viewer) return;
    const notices = state.notices.filter((n) => n.viewer === state.viewer && !state.dismissed.has(n.ts));
    const key = JSON.stringify([state.data.channel, state.data.dm, state.data.users, notices.map((n) => n.ts)]);
    if (key === state.renderedKey) return;
    state.renderedKey = key;
    renderConversation($("messages"), state.data.channel, notices, "No messages yet. Type /runctl help below.");
    renderConversation($("dm-messages"), state.data.dm, [], "No direct messages from the bot yet.");
    updateDmBadge();
  }

  function updateDmBadge() {
    const count = state.data && state.data.dm ? state.data.dm.messages.length : 0;
    const panelVisible = !$("app").classList.contains("dm-hidden") && getComputedStyle($("dm-panel")).display !== "none";
    if (panelVisible) state.dmSeen.set(state.viewer, count);
    const unseen = count - (state.dmSeen.get(state.viewer) || 0);
    const badge = $("dm-badge");
    badge.hidden = unseen <= 0;
    badge.textContent = String(unseen);
  }

  function addNotice(text) {
    state.notices.push({
      ts: (Date.now() / 1000).toFixed(6),
      viewer: state.viewer,
      text,
      local: true,
      ephemeral: true,
      user: "USLACKBOT",
      channel: state.config.channel.id,
      blocks: [],
      attachments: [],
      files: [],
    });
    state.renderedKey = "";
    render();
  }

  // ---------------------------------------------------------------------------------------------------
  // live updates: a long poll that answers as soon as the stand-in changes

  function setConnection(status) {
    const node = $("connection-status");
    node.classList.toggle("live", status === "live");
    node.classList.toggle("down", status === "down");
    node.textContent = status === "live" ? "live" : status === "down" ? "reconnecting…" : "connecting…";
  }

  async function pollLoop() {
    state.pollGeneration += 1;
    const generation = state.pollGeneration;
    if (state.pollAbort) state.pollAbort.abort();
    let since = -1;
    while (generation === state.pollGeneration) {
      const controller = new AbortController();
      state.pollAbort = controller;
      const viewer = state.viewer;
      const wait = since < 0 ? 0 : 20;
      try {
        const response = await fetch(
          `/api/state?user=${encodeURIComponent(viewer)}&since=${since}&wait=${wait}`,
          { signal: controller.signal, cache: "no-store" },
        );
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        const data = await response.json();
        if (generation !== state.pollGeneration) return;
        since = data.version;
        state.data = data;
        render();
        setConnection("live");
      } catch (error) {
        if (generation !== state.pollGeneration) return;
        setConnection("down");
        await sleep(1000);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // acting: commands and clicks go to the sandbox API, which signs them and delivers them to the bot

  async function postJson(path, body) {
    const response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    let data = {};
    try {
      data = await response.json();
    } catch (error) {
      data = { ok: false, error: `http_${response.status}` };
    }
    if (!response.ok && data.ok === undefined) data.ok = false;
    return data;
  }

  function confirmDialog(confirm) {
    return new Promise((resolve) => {
      const backdrop = $("confirm-backdrop");
      $("confirm-title").textContent = confirm.title ? confirm.title.text : "Are you sure?";
      const text = $("confirm-text");
      text.replaceChildren(renderText(confirm.text || { type: "plain_text", text: "" }, { users: state.data.users, channels: state.data.channels }));
      const ok = $("confirm-ok");
      const deny = $("confirm-deny");
      ok.textContent = confirm.confirm ? confirm.confirm.text : "Yes";
      deny.textContent = confirm.deny ? confirm.deny.text : "Cancel";
      ok.className = "bk-button " + (confirm.style === "danger" ? "bk-danger" : "bk-primary");
      const finish = (answer) => {
        backdrop.hidden = true;
        ok.onclick = null;
        deny.onclick = null;
        document.removeEventListener("keydown", onKey);
        resolve(answer);
      };
      const onKey = (event) => {
        if (event.key === "Escape") finish(false);
      };
      ok.onclick = () => finish(true);
      deny.onclick = () => finish(false);
      document.addEventListener("keydown", onKey);
      backdrop.hidden = false;
      ok.focus();
    });
  }

  async function act(message, block, element, value, control) {
    if (element.confirm && !(await confirmDialog(element.confirm))) {
      if (control.tagName === "SELECT") control.selectedIndex = 0;
      return;
    }
    if (element.url && safeUrl(element.url)) window.open(element.url, "_blank", "noopener,noreferrer");
    control.classList.add("busy");
    control.disabled = true;
    let result;
    try {
      result = await postJson("/api/action", {
        user: state.viewer,
        channel: message.channel,
        ts: message.ts,
        action_id: element.action_id,
        block_id: block.block_id,
        value: value,
        ephemeral: Boolean(message.ephemeral),
      });
    } catch (error) {
      result = { ok: false, error: "sandbox_unreachable", detail: String(error) };
    }
    control.classList.remove("busy");
    control.disabled = false;
    if (!result.ok) {
      control.classList.add("failed");
      control.title = result.detail || result.error;
      addNotice(`The app didn't respond to that click (*${result.error}*${result.detail ? `: ${result.detail}` : ""}).`);
    }
  }

  async function sendComposer() {
    const input = $("composer-input");
    const text = input.value.trim();
    if (!text) return;
    closeAutocomplete();
    const send = $("composer-send");
    send.disabled = true;
    let result;
    try {
      result = await postJson("/api/command", { user: state.viewer, text });
    } catch (error) {
      result = { ok: false, error: "sandbox_unreachable", detail: String(error) };
    }
    send.disabled = false;
    if (result.ok) {
      input.value = "";
      resizeComposer();
      updateUsageHint();
    } else if (result.error === "unknown_command") {
      const command = text.split(/\s/)[0];
      addNotice(`\`${command}\` is not a valid command. In Slack, all messages that start with the "/" character are interpreted as commands.`);
    } else {
      const command = text.split(/\s/)[0];
      addNotice(`\`${command}\` failed with the error "${result.error}"${result.detail ? ` (${result.detail})` : ""}.`);
    }
    input.focus();
  }

  // ---------------------------------------------------------------------------------------------------
  // composer autocomplete: the command, then its verbs with summary and usage

  function verbMatches(word) {
    const lower = word.toLowerCase();
    return state.config.verbs.filter(
      (verb) => verb.name.startsWith(lower) || verb.aliases.some((alias) => alias.startsWith(lower)),
    );
  }

  function exactVerb(rest) {
    const lower = rest.trim().toLowerCase();
    return state.config.verbs.find((verb) => verb.name === lower || verb.aliases.includes(lower)) || null;
  }

  function suggestions(value) {
    const command = state.config.command;
    if (!value.startsWith("/")) return null;
    const space = value.indexOf(" ");
    if (space < 0) {
      if (!command.startsWith(value)) return null;
      return {
        heading: "Commands",
        exact: value === command,
        items: [{ name: command, summary: `${state.config.bot.name}: the team's training fleet`, usage: `${command} [verb] …`, insert: command + " " }],
      };
    }
    if (value.slice(0, space) !== command) return null;
    const rest = value.slice(space + 1);
    if (rest.includes("\n")) return null;
    let items;
    if (!rest.includes(" ")) items = verbMatches(rest);
    else items = state.config.verbs.filter((verb) => verb.name.includes(" ") && verb.name.startsWith(rest.toLowerCase()));
    if (!items.length) return null;
    return {
      heading: `Verbs of ${command}`,
      exact: rest === "" || exactVerb(rest) !== null,
      items: items.map((verb) => ({ ...verb, insert: `${command} ${verb.name} ` })),
    };
  }

  function closeAutocomplete() {
    state.ac.open = false;
    $("autocomplete").hidden = true;
  }

  function renderAutocomplete() {
    const box = $("autocomplete");
    box.replaceChildren();
    if (!state.ac.open) {
      box.hidden = true;
      return;
    }
    box.appendChild(el("div", "ac-heading", state.ac.heading));
    state.ac.items.forEach((item, index) => {
      const row = el("div", "ac-item" + (index === state.ac.index ? " selected" : ""));
      row.setAttribute("role", "option");
      row.dataset.verb = item.name;
      const line = el("div", "ac-line");
      line.appendChild(el("span", "ac-name", item.name));
      line.appendChild(el("span", "ac-summary", item.summary));
      row.appendChild(line);
      row.appendChild(el("div", "ac-usage", item.usage));
      row.addEventListener("mousedown", (event) => {
        event.preventDefault();
        complete(index);
      });
      box.appendChild(row);
    });
    box.hidden = false;
    const selected = box.querySelector(".ac-item.selected");
    if (selected) selected.scrollIntoView({ block: "nearest" });
  }

  function updateAutocomplete() {
    const input = $("composer-input");
    const found = suggestions(input.value);
    if (!found) {
      closeAutocomplete();
      return;
    }
    const previous = state.ac.open ? state.ac.items[state.ac.index] : null;
    state.ac.items = found.items;
    state.ac.heading = found.heading;
    state.ac.exact = found.exact;
    const keep = previous ? found.items.findIndex((item) => item.name === previous.name) : -1;
    state.ac.index = keep >= 0 ? keep : 0;
    state.ac.open = true;
    renderAutocomplete();
  }

  function complete(index) {
    const item = state.ac.items[index];
    if (!item) return;
    const input = $("composer-input");
    input.value = item.insert;
    input.focus();
    input.setSelectionRange(input.value.length, input.value.length);
    updateAutocomplete();
    updateUsageHint();
  }

  function updateUsageHint() {
    const hint = $("usage-hint");
    const value = $("composer-input").value;
    const command = state.config.command;
    if (!value.startsWith(command + " ")) {
      hint.hidden = true;
      return;
    }
    const rest = value.slice(command.length + 1).toLowerCase();
    let best = null;
    for (const verb of state.config.verbs) {
      for (const word of [verb.name, ...verb.aliases]) {
        if ((rest === word || rest.startsWith(word + " ")) && (!best || word.length > best.word.length)) {
          best = { verb, word };
        }
      }
    }
    if (!best) {
      hint.hidden = true;
      return;
    }
    hint.textContent = `${best.verb.usage}  —  ${best.verb.summary}`;
    hint.hidden = false;
  }

  function resizeComposer() {
    const input = $("composer-input");
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 180) + "px";
  }

  function onComposerKey(event) {
    if (state.ac.open) {
      if (event.key === "ArrowDown" || event.key === "ArrowUp") {
        event.preventDefault();
        const step = event.key === "ArrowDown" ? 1 : -1;
        state.ac.index = (state.ac.index + step + state.ac.items.length) % state.ac.items.length;
        renderAutocomplete();
        return;
      }
      if (event.key === "Tab") {
        event.preventDefault();
        complete(state.ac.index);
        return;
      }
      if (event.key === "Escape") {
        event.preventDefault();
        closeAutocomplete();
        return;
      }
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing && !state.ac.exact) {
        event.preventDefault();
        complete(state.ac.index);
        return;
      }
    }
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendComposer();
    }
  }

  // ---------------------------------------------------------------------------------------------------
  // viewer switching, layout

  function setViewer(id) {
    if (!state.config.people.some((p) => p.id === id)) return;
    state.viewer = id;
    const person = currentPerson();
    $("user-switcher").value = id;
    const pill = $("viewer-role");
    pill.textContent = person.role;
    pill.className = `role-pill role-${person.role}`;
    pill.title = person.blurb;
    $("dm-subtitle").textContent = `${state.config.bot.name} and ${person.real_name}`;
    for (const item of $("people-list").children) item.classList.toggle("current", item.dataset.userId === id);
    history.replaceState(null, "", `#as=${encodeURIComponent(id)}`);
    state.renderedKey = "";
    state.data = null;
    pollLoop();
  }

  function initialViewer() {
    const match = /as=([^&]+)/.exec(location.hash);
    const wanted = match ? decodeURIComponent(match[1]) : null;
    const people = state.config.people;
    const found = people.find((p) => p.id === wanted || p.role === wanted);
    return (found || people[0]).id;
  }

  function buildChrome() {
    const config = state.config;
    document.title = `#${config.channel.name} · ${config.workspace.name} (runctl sandbox)`;
    $("workspace-name").textContent = config.workspace.name;
    $("topbar-workspace").textContent = config.workspace.name;
    $("sidebar-channel-name").textContent = config.channel.name;
    $("channel-name").textContent = config.channel.name;
    $("channel-topic").textContent = config.channel.topic || config.channel.purpose || "";
    $("sidebar-bot-name").textContent = config.bot.name;
    $("help-command").textContent = `${config.command} help`;
    $("composer-input").placeholder = `Message #${config.channel.name}, or type ${config.command} help`;

    const switcher = $("user-switcher");
    const list = $("people-list");
    for (const person of config.people) {
      const option = el("option", null, `${person.real_name} (${person.role})`);
      option.value = person.id;
      option.dataset.role = person.role;
      switcher.appendChild(option);

      const item = el("li");
      item.dataset.userId = person.id;
      item.dataset.role = person.role;
      item.title = `${person.title}: ${person.blurb}`;
      item.appendChild(avatarFor(person, false));
      const text = el("span");
      text.appendChild(el("span", "person-name", person.real_name));
      text.appendChild(el("span", "person-role", `${person.role} · @${person.name}`));
      item.appendChild(text);
      item.addEventListener("click", () => setViewer(person.id));
      list.appendChild(item);
    }
    switcher.addEventListener("change", () => setViewer(switcher.value));

    const app = $("app");
    const toggleDm = (open) => {
      app.classList.toggle("dm-hidden", !open);
      app.classList.toggle("dm-open", open);
      $("sidebar-dm").classList.toggle("active", open);
      updateDmBadge();
    };
    $("sidebar-dm").addEventListener("click", () => toggleDm(app.classList.contains("dm-hidden") || !app.classList.contains("dm-open")));
    $("dm-close").addEventListener("click", () => toggleDm(false));
    $("sidebar-channel").addEventListener("click", () => $("composer-input").focus());

    const input = $("composer-input");
    input.addEventListener("keydown", onComposerKey);
    input.addEventListener("input", () => {
      resizeComposer();
      updateAutocomplete();
      updateUsageHint();
    });
    input.addEventListener("blur", () => setTimeout(closeAutocomplete, 150));
    input.addEventListener("focus", updateAutocomplete);
    $("composer").addEventListener("submit", (event) => {
      event.preventDefault();
      sendComposer();
    });
  }

  async function start() {
    for (;;) {
      try {
        const response = await fetch("/api/config", { cache: "no-store" });
        if (!response.ok) throw new Error(`HTTP ${response.status}`);
        state.config = await response.json();
        break;
      } catch (error) {
        setConnection("down");
        await sleep(1000);
      }
    }
    buildChrome();
    setViewer(initialViewer());
    $("composer-input").focus();
  }

  document.addEventListener("DOMContentLoaded", start);
})();

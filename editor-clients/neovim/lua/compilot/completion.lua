--- Ghost text drawn with extmarks (Neovim 0.10 and 0.11, or ghost_text = "extmarks"): asks the
--- server for textDocument/inlineCompletion, shows the first line inline and the rest as
--- virtual lines, follows typing through it, and reports accepts, partial accepts and
--- dismissals. The tight loop (debounce, drop stale answers, type through) follows llama.vim.
local config = require("compilot.config")
local lsp = require("compilot.lsp")
local text = require("compilot.text")
local api = vim.api

local M = {}

M.ns = api.nvim_create_namespace("compilot.ghost")
M.INVOKED, M.AUTOMATIC = 1, 2 -- lsp.InlineCompletionTriggerKind

---@class compilot.State
---@field items table[]|nil the shown answer's items (LSP InlineCompletionItem)
---@field index integer the item on screen
---@field prefix string the item's text already in the buffer (typed through or accepted)
---@field row integer 0-based row of the cursor, where the rest of the item goes
---@field col integer byte column of the cursor
---@field tick integer the buffer's changedtick when the state last matched it
---@field hint string|nil "(2/3)" after next / prev
---@field seq integer request counter: only the newest answer is shown
---@field timer table|nil debounce timer
---@field pending table|nil { client, id } of the request in flight

---@type table<integer, compilot.State>
local states = {}

local function state(bufnr)
  local st = states[bufnr]
  if not st then
    st = { index = 1, prefix = "", row = 0, col = 0, tick = -1, seq = 0 }
    states[bufnr] = st
  end
  return st
end

local function item_of(st)
  return st and st.items and st.items[st.index] or nil
end

local function rest_of(st)
  return text.insert_text(item_of(st)):sub(#st.prefix + 1)
end

local function tick(bufnr)
  return api.nvim_buf_get_changedtick(bufnr)
end

--- 0-based row and byte column of the cursor, when `bufnr` is in the current window.
---@return integer|nil, integer|nil
local function cursor(bufnr)
  local win = api.nvim_get_current_win()
  if api.nvim_win_get_buf(win) ~= bufnr then
    return nil, nil
  end
  local pos = api.nvim_win_get_cursor(win)
  return pos[1] - 1, pos[2]
end

local function line_at(bufnr, row)
  return api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
end

--- Insert `s` at (row, col) and put the cursor after it; returns the new (row, col).
---@return integer, integer
function M.insert(bufnr, row, col, s)
  local lines = text.lines(s)
  api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  local end_row = row + #lines - 1
  local end_col = (#lines == 1 and col or 0) + #lines[#lines]
  local win = vim.fn.bufwinid(bufnr)
  if win ~= -1 then
    api.nvim_win_set_cursor(win, { end_row + 1, end_col })
  end
  return end_row, end_col
end

local function render(bufnr, st)
  api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  local ts = vim.bo[bufnr].tabstop
  local lines = text.lines(rest_of(st))
  local chunks = {}
  for i, l in ipairs(lines) do
    chunks[i] = { { text.display(l, ts), "CompilotSuggestion" } }
  end
  if st.hint then
    table.insert(chunks[#chunks], { " " .. st.hint, "CompilotHint" })
  end
  local opts = { hl_mode = "combine" }
  if lines[1] ~= "" or (#lines == 1 and st.hint) then
    opts.virt_text = chunks[1]
    opts.virt_text_pos = "inline"
  end
  if #lines > 1 then
    opts.virt_lines = { unpack(chunks, 2) }
  end
  api.nvim_buf_set_extmark(bufnr, M.ns, st.row, st.col, opts)
end

--- Hide the suggestion without a report.
local function forget(bufnr, st)
  st.items, st.hint, st.prefix = nil, nil, ""
  if api.nvim_buf_is_valid(bufnr) then
    api.nvim_buf_clear_namespace(bufnr, M.ns, 0, -1)
  end
end

local function reject(bufnr, st)
  local item = item_of(st)
  forget(bufnr, st)
  if item then
    lsp.report(bufnr, "rejected", item)
  end
end

--- Bring the suggestion in line with the buffer: typing its next characters moves it on;
--- other text, a deletion or a move elsewhere dismisses it (reported as rejected).
---@return boolean shown whether a suggestion is on screen at the cursor
local function sync(bufnr)
  local st = states[bufnr]
  if not item_of(st) then
    return false
  end
  local row, col = cursor(bufnr)
  if row == nil then
    return false
  end
  if row == st.row and col == st.col and tick(bufnr) == st.tick then
    return true
  end
  if row == st.row and col > st.col then
    local typed = line_at(bufnr, row):sub(st.col + 1, col)
    local rest = text.after_typed(rest_of(st), typed)
    if rest == "" then -- typed it all by hand: nothing left to show or report
      forget(bufnr, st)
      return false
    elseif rest then
      st.prefix, st.col, st.tick, st.hint = st.prefix .. typed, col, tick(bufnr), nil
      render(bufnr, st)
      return true
    end
  end
  reject(bufnr, st)
  return false
end

--- Show `items` (an answer for the cursor at row, col) in place of what is shown.
function M.show(bufnr, client, items, row, col)
  local st = state(bufnr)
  local line = line_at(bufnr, row)
  local usable, prefix = {}, nil
  for _, item in ipairs(items) do
    local typed = ""
    local range = item.range
    if range and range.start.line == row then
      local start = text.byte_col(line, range.start.character, client.offset_encoding)
      typed = line:sub(start + 1, col)
    elseif range then
      typed = nil -- starts on another line: not for this cursor
    end
    local rest = typed and text.after_typed(text.insert_text(item), typed)
    if rest and rest ~= "" and (prefix == nil or prefix == typed) then
      prefix = typed
      table.insert(usable, item)
    end
  end
  if #usable == 0 then
    return false
  end
  st.items, st.index, st.prefix, st.hint, st.asked = usable, 1, prefix, nil, false
  st.row, st.col, st.tick = row, col, tick(bufnr)
  render(bufnr, st)
  lsp.shown(bufnr, usable[1])
  return true
end

local function cancel(st)
  if st.pending then
    pcall(lsp.cancel, st.pending.client, st.pending.id)
    st.pending = nil
  end
end

--- Ask the server for a suggestion at the cursor; the answer is shown if the cursor and the
--- text are still where they were.
---@param kind integer|nil trigger kind (INVOKED or AUTOMATIC)
---@param shown function|nil called once the answer is shown
---@return boolean sent
function M.request(bufnr, kind, shown)
  local client = lsp.client(bufnr)
  local row, col = cursor(bufnr)
  if not client or row == nil then
    return false
  end
  local st = state(bufnr)
  cancel(st)
  st.seq = st.seq + 1
  local seq, asked = st.seq, tick(bufnr)
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = kind or M.AUTOMATIC }
  local ok, id = lsp.request(client, lsp.INLINE, params, function(err, result)
    if seq ~= st.seq then
      return
    end
    st.pending = nil
    if err or type(result) ~= "table" or not api.nvim_buf_is_valid(bufnr) then
      return
    end
    local r, c = cursor(bufnr)
    if r ~= row or c ~= col or tick(bufnr) ~= asked then
      return -- the user went on; the request made for that is on its way
    end
    if M.show(bufnr, client, result.items or result, row, col) and shown then
      shown()
    end
  end, bufnr)
  if ok then
    st.pending = { client = client, id = id }
  end
  return ok and true or false
end

--- Request after `debounce_ms` without a keystroke.
function M.schedule(bufnr)
  local st = state(bufnr)
  st.timer = st.timer or vim.uv.new_timer()
  st.timer:stop()
  st.timer:start(config.options.debounce_ms, 0, vim.schedule_wrap(function()
    if api.nvim_buf_is_valid(bufnr) and api.nvim_get_current_buf() == bufnr
      and api.nvim_get_mode().mode:sub(1, 1) == "i" then
      M.request(bufnr, M.AUTOMATIC)
    end
  end))
end

function M.suggest(bufnr)
  return M.request(bufnr, M.INVOKED)
end

function M.visible(bufnr)
  return sync(bufnr)
end

--- The item on screen and the text that accepting it inserts.
---@return table|nil item, string|nil rest
function M.current(bufnr)
  if not sync(bufnr) then
    return nil, nil
  end
  local st = states[bufnr]
  return item_of(st), rest_of(st)
end

function M.count(bufnr)
  local st = states[bufnr]
  return st and st.items and #st.items or 0, st and st.index or 0
end

function M.accept(bufnr)
  if not sync(bufnr) then
    return false
  end
  local st = states[bufnr]
  local item, rest = item_of(st), rest_of(st)
  forget(bufnr, st)
  M.insert(bufnr, st.row, st.col, rest)
  lsp.report(bufnr, "accepted", item)
  return true
end

--- Accept up to the end of the suggestion's first non-blank line; the rest stays shown.
function M.accept_line(bufnr)
  if not sync(bufnr) then
    return false
  end
  local st = states[bufnr]
  local item, rest = item_of(st), rest_of(st)
  local chunk = text.first_line(rest)
  if chunk == rest then
    return M.accept(bufnr)
  end
  st.row, st.col = M.insert(bufnr, st.row, st.col, chunk)
  st.prefix, st.tick, st.hint = st.prefix .. chunk, tick(bufnr), nil
  render(bufnr, st)
  lsp.report(bufnr, "partial", item, { length = text.utf16_len(st.prefix), kind = "line" })
  return true
end

function M.dismiss(bufnr)
  local st = states[bufnr]
  if st then
    cancel(st)
    st.seq = st.seq + 1
  end
  if not sync(bufnr) then
    return false
  end
  reject(bufnr, st)
  return true
end

--- Show the next (delta 1) or previous (-1) item; request one when none is shown. With one
--- item shown, ask again (Invoked): the server decodes an answer's alternatives after it, and
--- an invoked request has them decoded now; the next of those is shown.
function M.cycle(bufnr, delta)
  if not sync(bufnr) then
    return M.request(bufnr, M.INVOKED)
  end
  local st = states[bufnr]
  if #st.items == 1 and not st.asked then
    return M.request(bufnr, M.INVOKED, function()
      st.asked = true -- one more ask per answer: a lone suggestion stays alone
      M.cycle(bufnr, delta)
    end)
  end
  local n = #st.items
  for step = 1, n - 1 do
    local i = (st.index - 1 + delta * step) % n + 1
    local rest = text.after_typed(text.insert_text(st.items[i]), st.prefix)
    if rest and rest ~= "" then
      st.index = i
      break
    end
  end
  st.hint = ("(%d/%d)"):format(st.index, n)
  render(bufnr, st)
  lsp.shown(bufnr, item_of(st))
  return true
end

--- Leaving Insert mode dismisses what is shown (reported when it was still current).
local function leave(bufnr)
  local st = states[bufnr]
  if not st then
    return
  end
  if st.timer then
    st.timer:stop()
  end
  cancel(st)
  st.seq = st.seq + 1
  if item_of(st) and tick(bufnr) == st.tick then
    reject(bufnr, st)
  else
    forget(bufnr, st)
  end
end

--- Buffer-local autocmds in `group`.
function M.attach(bufnr, group)
  state(bufnr)
  api.nvim_create_autocmd("TextChangedI", {
    group = group,
    buffer = bufnr,
    desc = "compilot: follow typing through the suggestion, ask for the next one",
    callback = function()
      sync(bufnr)
      if config.options.auto_trigger then
        M.schedule(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd("InsertEnter", {
    group = group,
    buffer = bufnr,
    desc = "compilot: ask for a suggestion",
    callback = function()
      if config.options.auto_trigger then
        M.schedule(bufnr)
      end
    end,
  })
  api.nvim_create_autocmd("CursorMovedI", {
    group = group,
    buffer = bufnr,
    desc = "compilot: a move away dismisses the suggestion",
    callback = function()
      sync(bufnr)
    end,
  })
  api.nvim_create_autocmd("InsertLeavePre", {
    group = group,
    buffer = bufnr,
    desc = "compilot: leaving Insert mode dismisses the suggestion",
    callback = function()
      leave(bufnr)
    end,
  })
end

function M.detach(bufnr)
  local st = states[bufnr]
  if not st then
    return
  end
  cancel(st)
  if st.timer then
    st.timer:stop()
    st.timer:close()
  end
  forget(bufnr, st)
  states[bufnr] = nil
end

return M

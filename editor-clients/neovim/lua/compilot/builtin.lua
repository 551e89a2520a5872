--- Ghost text by Neovim's own vim.lsp.inline_completion (0.12): Neovim requests, draws and
--- cycles; this module enables it for compilot's buffers, accepts, takes a line or dismisses,
--- and reports each outcome.
---
--- Neovim does not expose the item on screen, which a report must name, so the answers of
--- compilot's client are observed on their way to it. Its get() applies an item on the next
--- tick, after an <Esc> typed right behind <Tab> has already dropped it; so the text is
--- inserted here at once and get() only makes Neovim let go of its copy.
local lsp = require("compilot.lsp")
local text = require("compilot.text")
local completion = require("compilot.completion")
local api = vim.api

local M = {}

local NAMESPACE = "nvim.lsp.inline_completion" -- the extmark namespace Neovim draws in

---@class compilot.Seen
---@field items table[] the last answer's items
---@field index integer the item Neovim shows
---@field row integer 0-based row of the request's cursor
---@field col integer its byte column
---@field done boolean an outcome was reported for the item on screen

---@type table<integer, compilot.Seen>
local seen = {}

local function ic()
  return vim.lsp.inline_completion
end

--- Whether Neovim draws a suggestion in `bufnr` now.
function M.visible(bufnr)
  local ns = api.nvim_get_namespaces()[NAMESPACE]
  if not ns or not api.nvim_buf_is_valid(bufnr) then
    return false
  end
  return #api.nvim_buf_get_extmarks(bufnr, ns, 0, -1, { limit = 1 }) > 0
end

local function current(bufnr)
  local s = seen[bufnr]
  return s and not s.done and s.items[s.index] or nil
end

local function answered(client, params, result)
  local bufnr = vim.uri_to_bufnr(params.textDocument.uri)
  local items = result.items or result
  if type(items) ~= "table" or #items == 0 then
    return
  end
  local row = params.position.line
  local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ""
  seen[bufnr] = {
    items = items,
    index = 1,
    row = row,
    col = text.byte_col(line, params.position.character, client.offset_encoding),
    done = false,
  }
  lsp.shown(bufnr, items[1])
end

--- Where the buffer stands: its changedtick and the cursor of its window.
local function snapshot(bufnr)
  local win = vim.fn.bufwinid(bufnr)
  local pos = win ~= -1 and api.nvim_win_get_cursor(win) or { 0, 0 }
  return { api.nvim_buf_get_changedtick(bufnr), pos[1], pos[2] }
end

--- Wrap this client's request() (once) so that its inline completion answers are seen, and
--- those that come back after the text or the cursor moved on are dropped: Neovim would draw
--- them where the request was made (it asks again after every move anyway).
local function observe(client)
  if client._compilot_observed then
    return
  end
  client._compilot_observed = true
  local request = client.request
  client.request = function(self, method, params, handler, bufnr)
    if method == lsp.INLINE and type(handler) == "function" then
      local b = vim.uri_to_bufnr(params.textDocument.uri)
      local asked = snapshot(b)
      local inner = handler
      handler = function(err, result, ctx)
        if not api.nvim_buf_is_valid(b) or not vim.deep_equal(snapshot(b), asked) then
          return
        end
        if not err and type(result) == "table" then
          pcall(answered, self, params, result)
        end
        return inner(err, result, ctx)
      end
    end
    return request(self, method, params, handler, bufnr)
  end
end

local function cursor(bufnr)
  local win = vim.fn.bufwinid(bufnr)
  if win == -1 then
    return nil, nil
  end
  local pos = api.nvim_win_get_cursor(win)
  return pos[1] - 1, pos[2]
end

local function done(bufnr)
  if seen[bufnr] then
    seen[bufnr].done = true
  end
end

--- The item on screen, the rest of it after what was typed since the request, and the cursor;
--- nil when none is shown or the typing left it.
---@return table|nil item, string rest, string typed, integer row, integer col
local function on_screen(bufnr)
  local item = M.visible(bufnr) and current(bufnr)
  if not item then
    return nil
  end
  local s = seen[bufnr]
  local row, col = cursor(bufnr)
  if row ~= s.row or col == nil or col < s.col then
    return nil
  end
  local typed = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]:sub(s.col + 1, col)
  local rest = text.after_typed(text.insert_text(item), typed)
  if not rest or rest == "" then
    return nil
  end
  return item, rest, typed, row, col
end

--- Have Neovim drop its copy of the item (on its next tick), without applying it.
local function let_go(bufnr)
  ic().get({ bufnr = bufnr, on_accept = function() end })
end

function M.accept(bufnr)
  local item, rest, _, row, col = on_screen(bufnr)
  if not item then
    return false
  end
  done(bufnr)
  let_go(bufnr)
  completion.insert(bufnr, row, col, rest)
  lsp.report(bufnr, "accepted", item)
  return true
end

function M.accept_line(bufnr)
  local item, rest, typed, row, col = on_screen(bufnr)
  if not item then
    return false
  end
  local chunk = text.first_line(rest)
  done(bufnr)
  let_go(bufnr)
  completion.insert(bufnr, row, col, chunk)
  if chunk == rest then
    lsp.report(bufnr, "accepted", item)
  else -- Neovim asks again as the cursor moved; the server answers the rest at once
    lsp.report(bufnr, "partial", item, { length = text.utf16_len(typed .. chunk), kind = "line" })
  end
  return true
end

function M.dismiss(bufnr)
  local item = on_screen(bufnr)
  if not item then
    return false
  end
  done(bufnr)
  let_go(bufnr)
  lsp.report(bufnr, "rejected", item)
  return true
end

--- Ask now: Neovim's automatic request, through its own autocmd group for the buffer.
function M.suggest(bufnr)
  local group = ("nvim.lsp.inline_completion:%d"):format(bufnr)
  local ok = pcall(api.nvim_exec_autocmds, "CursorMovedI", { group = group, modeline = false })
  if not ok then
    ic().enable(true, { bufnr = bufnr })
  end
  return ok
end

function M.cycle(bufnr, delta)
  if not M.visible(bufnr) then
    return M.suggest(bufnr)
  end
  ic().select({ bufnr = bufnr, count = delta })
  local s = seen[bufnr]
  if s and #s.items > 0 then
    s.index = (s.index - 1 + delta) % #s.items + 1
    s.done = false
    lsp.shown(bufnr, s.items[s.index])
  end
  return true
end

--- The item on screen (as the server sent it) and the text accepting it inserts.
function M.current(bufnr)
  local item, rest = on_screen(bufnr)
  return item, rest
end

function M.count(bufnr)
  local s = seen[bufnr]
  return s and #s.items or 0, s and s.index or 0
end

--- Typing that leaves the item on screen dismisses it.
local function check_typing(bufnr)
  local s = seen[bufnr]
  local item = current(bufnr)
  if not item then
    return
  end
  local row, col = cursor(bufnr)
  local typed = row == s.row and col and col >= s.col
    and api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1]:sub(s.col + 1, col)
  if not typed or not text.after_typed(text.insert_text(item), typed) then
    s.done = true
    lsp.report(bufnr, "rejected", item)
  end
end

--- Neovim's drawing of an item whose start is no longer in the buffer (deleted with <BS>)
--- fails on every cursor move ("Invalid 'col': out of range" in 0.12-dev); start its
--- completor afresh before it draws. Runs first: its autocmds are made after compilot's.
local function guard(bufnr)
  local s = seen[bufnr]
  if not s or not M.visible(bufnr) then -- Neovim holds no item: nothing to draw
    return
  end
  local line = api.nvim_buf_get_lines(bufnr, s.row, s.row + 1, false)[1]
  if line == nil or s.col > #line then
    ic().enable(false, { bufnr = bufnr })
    ic().enable(true, { bufnr = bufnr })
    -- The new completor's autocmds miss the event being handled: ask on its behalf.
    vim.schedule(function()
      if api.nvim_buf_is_valid(bufnr) and api.nvim_get_mode().mode:sub(1, 1) == "i" then
        M.suggest(bufnr)
      end
    end)
  end
end

function M.attach(client, bufnr, group)
  observe(client)
  api.nvim_create_autocmd({ "CursorMovedI", "TextChangedP" }, {
    group = group,
    buffer = bufnr,
    desc = "compilot: keep Neovim from drawing a suggestion whose place was deleted",
    callback = function()
      guard(bufnr)
    end,
  })
  api.nvim_create_autocmd("TextChangedI", {
    group = group,
    buffer = bufnr,
    desc = "compilot: typing past the suggestion dismisses it",
    callback = function()
      check_typing(bufnr)
    end,
  })
  api.nvim_create_autocmd("InsertLeavePre", {
    group = group,
    buffer = bufnr,
    desc = "compilot: leaving Insert mode dismisses the suggestion",
    callback = function()
      local item = M.visible(bufnr) and current(bufnr)
      if item then
        done(bufnr)
        lsp.report(bufnr, "rejected", item)
      end
    end,
  })
  -- (Re)start Neovim's completor now, so that its autocmds come after the ones above.
  ic().enable(false, { bufnr = bufnr })
  ic().enable(true, { bufnr = bufnr })
end

function M.detach(bufnr)
  seen[bufnr] = nil
  if ic() and api.nvim_buf_is_valid(bufnr) then
    pcall(ic().enable, false, { bufnr = bufnr })
  end
end

return M

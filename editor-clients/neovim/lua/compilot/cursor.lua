--- Where the cursor is, told to the server so that it evaluates the window there before the
--- first request (server/lsp.py): `textDocument/didFocus` (Copilot's notification, with the
--- cursor's position) when a buffer is entered, `compilot/didMoveCursor` once the cursor has
--- rested REST_MS on a line other than the last one told.
local lsp = require("compilot.lsp")
local api = vim.api

local M = {}

M.DID_FOCUS = "textDocument/didFocus"
M.DID_MOVE_CURSOR = "compilot/didMoveCursor"
M.REST_MS = 300
--- What was told this session, oldest first (at most 50): { method, uri, line } (tests).
M.told = {}

local timer = nil
local last = nil -- { uri, line } told last

local function position(client, bufnr)
  local win = api.nvim_get_current_win()
  if api.nvim_win_get_buf(win) ~= bufnr then
    return nil
  end
  local params = vim.lsp.util.make_position_params(win, client.offset_encoding or "utf-16")
  return params.textDocument.uri, params.position
end

local function tell(client, bufnr, method)
  local uri, pos = position(client, bufnr)
  if not uri then
    return
  end
  if method == M.DID_MOVE_CURSOR and last and last.uri == uri and last.line == pos.line then
    return -- typing along the line told last: the completion request covers it
  end
  last = { uri = uri, line = pos.line }
  table.insert(M.told, { method = method, uri = uri, line = pos.line })
  if #M.told > 50 then
    table.remove(M.told, 1)
  end
  lsp.notify(client, method, { textDocument = { uri = uri }, position = pos })
end

local function stop_timer()
  if timer then
    timer:stop()
    timer:close()
    timer = nil
  end
end

--- Buffer-local autocmds in `group`; tells the focus now if the buffer is the current one.
function M.attach(client, bufnr, group)
  api.nvim_create_autocmd("BufEnter", {
    group = group,
    buffer = bufnr,
    desc = "compilot: tell the server which buffer has the focus",
    callback = function()
      stop_timer()
      tell(client, bufnr, M.DID_FOCUS)
    end,
  })
  api.nvim_create_autocmd({ "CursorMoved", "CursorMovedI" }, {
    group = group,
    buffer = bufnr,
    desc = "compilot: tell the server where the cursor rests",
    callback = function()
      stop_timer()
      timer = vim.uv.new_timer()
      timer:start(M.REST_MS, 0, vim.schedule_wrap(function()
        stop_timer()
        if api.nvim_get_current_buf() == bufnr and not lsp.is_stopped(client) then
          tell(client, bufnr, M.DID_MOVE_CURSOR)
        end
      end))
    end,
  })
  if api.nvim_get_current_buf() == bufnr then
    tell(client, bufnr, M.DID_FOCUS)
  end
end

function M.detach()
  stop_timer()
end

return M

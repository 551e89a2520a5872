--- The compilot language server: one client per Neovim, requests, and the events reported.
local config = require("compilot.config")
local text = require("compilot.text")
local api = vim.api

local M = {}

M.NAME = "compilot"
M.INLINE = "textDocument/inlineCompletion"
M.COMMANDS = {
  accepted = "compilot.accepted",
  rejected = "compilot.rejected",
  partial = "compilot.partiallyAccepted",
}
--- Events reported this session, oldest first (at most MAX_EVENTS): { kind, id, detail, ok }.
M.events = {}
local MAX_EVENTS = 200
local shown_ids = {} -- candidate id -> true, for didShowCompletion once per item
local shown_order = {}

local HAS_011 = vim.fn.has("nvim-0.11") == 1

--- client:request on 0.11+, client.request on 0.10.
function M.request(client, method, params, handler, bufnr)
  if HAS_011 then
    return client:request(method, params, handler, bufnr)
  end
  return client.request(method, params, handler, bufnr)
end

function M.notify(client, method, params)
  if HAS_011 then
    return client:notify(method, params)
  end
  return client.notify(method, params)
end

function M.cancel(client, id)
  if HAS_011 then
    return client:cancel_request(id)
  end
  return client.cancel_request(id)
end

function M.is_stopped(client)
  if HAS_011 then
    return client:is_stopped()
  end
  return client.is_stopped()
end

local function get_clients(filter)
  return (vim.lsp.get_clients or vim.lsp.get_active_clients)(filter)
end

--- The compilot client attached to `bufnr` (or any compilot client when bufnr is nil).
---@param bufnr integer|nil
function M.client(bufnr)
  return get_clients({ name = M.NAME, bufnr = bufnr })[1]
end

function M.clients()
  return get_clients({ name = M.NAME })
end

--- Root dir: the nearest folder with a root marker, else the file's folder, else the cwd.
---@param bufnr integer
---@return string
function M.root_dir(bufnr)
  local root = vim.fs.root(bufnr, config.options.root_markers)
  if root then
    return root
  end
  local name = api.nvim_buf_get_name(bufnr)
  if name ~= "" then
    return vim.fs.dirname(name)
  end
  return vim.uv.cwd()
end

local warned = false

--- Start the server for `bufnr`, or attach the running one (one server serves every root:
--- the model is loaded once).
---@param bufnr integer
---@param on_attach fun(client: table, bufnr: integer)
---@return integer|nil client_id
function M.start(bufnr, on_attach)
  local opts = config.options
  if vim.bo[bufnr].buftype ~= "" then
    return nil
  end
  if vim.fn.executable(opts.cmd[1]) ~= 1 then
    if not warned then
      warned = true
      vim.notify(("compilot: the server command %q was not found; install compilot or set cmd in "
        .. "require(\"compilot\").setup() (:help compilot-config)"):format(opts.cmd[1]),
        vim.log.levels.WARN)
    end
    return nil
  end
  return vim.lsp.start({
    name = M.NAME,
    cmd = opts.cmd,
    cmd_env = opts.cmd_env,
    root_dir = M.root_dir(bufnr),
    init_options = opts.settings,
    on_attach = on_attach,
  }, {
    bufnr = bufnr,
    reuse_client = function(client, _)
      return client.name == M.NAME and not M.is_stopped(client)
    end,
  })
end

--- Send the settings to running servers (setup() called again).
function M.push_settings()
  for _, client in ipairs(M.clients()) do
    M.notify(client, "workspace/didChangeConfiguration",
      { settings = { compilot = config.options.settings } })
  end
end

--- workspace/executeCommand on the compilot client of `bufnr` (or any); false if none runs.
---@param bufnr integer|nil
---@param command string
---@param arguments table
---@param callback fun(err: table|nil, result: any)|nil
function M.execute(bufnr, command, arguments, callback)
  local client = M.client(bufnr) or M.client(nil)
  if not client then
    return false
  end
  M.request(client, "workspace/executeCommand", { command = command, arguments = arguments },
    function(err, result)
      if callback then
        callback(err, result)
      end
    end, bufnr)
  return true
end

local function remember(event)
  table.insert(M.events, event)
  if #M.events > MAX_EVENTS then
    table.remove(M.events, 1)
  end
end

--- Report an accept ("accepted"), a partial accept ("partial", with { length, kind }) or a
--- dismissal ("rejected") of the suggestion `item` to the server.
---@param bufnr integer
---@param kind "accepted"|"rejected"|"partial"
---@param item table an LSP InlineCompletionItem
---@param detail table|nil
function M.report(bufnr, kind, item, detail)
  local id = text.candidate_id(item)
  if not id then
    return
  end
  local event = { kind = kind, id = id, detail = detail }
  remember(event)
  M.execute(bufnr, M.COMMANDS[kind], detail and { id, detail } or { id }, function(err, result)
    event.ok = err == nil and result == true
    if err then
      event.error = err.message or tostring(err)
    end
  end)
  if kind ~= "partial" then
    shown_ids[id] = nil
  end
end

--- Tell the server `item` is on screen (Copilot's textDocument/didShowCompletion), once.
---@param bufnr integer
---@param item table
function M.shown(bufnr, item)
  local id = text.candidate_id(item)
  local client = M.client(bufnr)
  if not id or not client or shown_ids[id] then
    return
  end
  shown_ids[id] = true
  table.insert(shown_order, id)
  if #shown_order > MAX_EVENTS then
    shown_ids[table.remove(shown_order, 1)] = nil
  end
  -- Neovim draws the text itself: known, not inferred (as the VS Code extension must).
  M.notify(client, "textDocument/didShowCompletion", { item = item, inferred = false })
end

return M

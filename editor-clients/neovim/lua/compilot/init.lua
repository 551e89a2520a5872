--- compilot.nvim: ghost-text completions from the local compilot server (:help compilot).
local config = require("compilot.config")
local lsp = require("compilot.lsp")
local keymaps = require("compilot.keymaps")
local api = vim.api

local M = {}

local GROUP = "compilot"
---@type table<integer, integer> bufnr -> compilot client id
local attached = {}

--- The module that draws ghost text: Neovim's own (0.12) or compilot's extmarks.
local function engine()
  if config.ghost_mode() == "builtin" then
    return require("compilot.builtin")
  end
  return require("compilot.completion")
end

local function buf(bufnr)
  return (bufnr == nil or bufnr == 0) and api.nvim_get_current_buf() or bufnr
end

--- Ask for a suggestion at the cursor now.
function M.suggest(bufnr)
  return engine().suggest(buf(bufnr))
end

--- Insert the suggestion on screen; false when there is none.
function M.accept(bufnr)
  return engine().accept(buf(bufnr))
end

--- Insert the suggestion up to the end of its next line; false when there is none.
function M.accept_line(bufnr)
  return engine().accept_line(buf(bufnr))
end

--- Hide the suggestion (reported to the server as rejected); false when there is none.
function M.dismiss(bufnr)
  return engine().dismiss(buf(bufnr))
end

--- Show the next candidate (asks for one when none is shown).
function M.next(bufnr)
  return engine().cycle(buf(bufnr), 1)
end

--- Show the previous candidate.
function M.prev(bufnr)
  return engine().cycle(buf(bufnr), -1)
end

--- Whether a suggestion is shown in the buffer.
function M.visible(bufnr)
  return engine().visible(buf(bufnr))
end

--- State for statuslines and tests: the ghost text mode, the suggestion on screen and the
--- events this Neovim reported.
function M.status(bufnr)
  bufnr = buf(bufnr)
  local e = engine()
  local item, rest = e.current(bufnr)
  local count, index = e.count(bufnr)
  return {
    mode = config.ghost_mode(),
    attached = attached[bufnr] ~= nil,
    client_id = attached[bufnr],
    visible = item ~= nil,
    item = item and { id = require("compilot.text").candidate_id(item), text = rest } or nil,
    count = count,
    index = index,
    events = lsp.events,
  }
end

local function detach(bufnr)
  attached[bufnr] = nil
  require("compilot.completion").detach(bufnr)
  if config.has_builtin() then
    require("compilot.builtin").detach(bufnr)
  end
  keymaps.detach(bufnr)
  require("compilot.cursor").detach()
  pcall(api.nvim_clear_autocmds, { group = GROUP, buffer = bufnr })
end

local function attach(client, bufnr)
  if attached[bufnr] then
    detach(bufnr)
  end
  attached[bufnr] = client.id
  local group = api.nvim_create_augroup(GROUP, { clear = false })
  if config.ghost_mode() == "builtin" then
    require("compilot.builtin").attach(client, bufnr, group)
  else
    require("compilot.completion").attach(bufnr, group)
  end
  require("compilot.cursor").attach(client, bufnr, group)
  api.nvim_create_autocmd("LspDetach", {
    group = group,
    buffer = bufnr,
    desc = "compilot: forget the buffer when the server leaves it",
    callback = function(args)
      if args.data and args.data.client_id == client.id then
        detach(bufnr)
        return true
      end
    end,
  })
  keymaps.attach(bufnr, {
    accept = function() return M.accept(bufnr) end,
    accept_line = function() return M.accept_line(bufnr) end,
    dismiss = function() return M.dismiss(bufnr) end,
    next = function() return M.next(bufnr) end,
    prev = function() return M.prev(bufnr) end,
    suggest = function() return M.suggest(bufnr) end,
  })
end

--- JSON null (vim.NIL) as nil.
local function value(v)
  if v == vim.NIL then
    return nil
  end
  return v
end

local function percent(rate)
  rate = value(rate)
  return rate and ("%d%%"):format(math.floor(rate * 100 + 0.5)) or "n/a"
end

--- The lines :CompilotStats shows for a compilot.status answer.
function M.format_status(s)
  local today, training = value(s.today) or {}, value(s.training) or {}
  local lines = {
    ("compilot %s, adapter %s, model %s"):format(value(s.version) or "?",
      value(s.adapter) or "?", value(s.model) or "(not loaded yet)"),
    ("today: %d shown, %d accepted (%s), %d checked, %d compiled (%s)"):format(
      value(today.shown) or 0, value(today.accepted) or 0, percent(today.acceptRate),
      value(today.checked) or 0, value(today.compiled) or 0, percent(today.compileRate)),
    ("training: %s (log %s)"):format(value(training.running) and "running" or "idle",
      value(training.log) or "?"),
  }
  if value(s.report) then
    table.insert(lines, "report: " .. s.report)
  end
  if value(s.error) then
    table.insert(lines, "error: " .. s.error)
  end
  local counts = { accepted = 0, partial = 0, rejected = 0 }
  for _, e in ipairs(lsp.events) do
    counts[e.kind] = (counts[e.kind] or 0) + 1
  end
  table.insert(lines, ("this session: %d accepted, %d partly accepted, %d dismissed"):format(
    counts.accepted, counts.partial, counts.rejected))
  return lines
end

local function not_running()
  vim.notify("compilot: the server is not running; open a file of a filetype in "
    .. "require(\"compilot\").setup({ filetypes = ... })", vim.log.levels.WARN)
end

--- compilot.status from the server, to `callback(err, status)`.
function M.stats(callback)
  if not lsp.execute(nil, "compilot.status", {}, callback) then
    callback({ message = "compilot is not running" }, nil)
  end
end

local function stats_command()
  if not lsp.client(nil) then
    return not_running()
  end
  M.stats(function(err, result)
    if err or type(result) ~= "table" then
      vim.notify("compilot: compilot.status failed: " .. (err and err.message or "no answer"),
        vim.log.levels.ERROR)
      return
    end
    vim.notify(table.concat(M.format_status(result), "\n"), vim.log.levels.INFO)
  end)
end

local function train_command()
  if not lsp.execute(nil, "compilot.train", {}, function(err, result)
    if err or type(result) ~= "table" then
      vim.notify("compilot: compilot.train failed: " .. (err and err.message or "no answer"),
        vim.log.levels.ERROR)
      return
    end
    local log = result.log and ("\nlog: " .. result.log) or ""
    vim.notify("compilot: " .. (result.message or "") .. log,
      result.started and vim.log.levels.INFO or vim.log.levels.WARN)
  end) then
    not_running()
  end
end

local function highlights()
  api.nvim_set_hl(0, "CompilotSuggestion", { link = "Comment", default = true })
  api.nvim_set_hl(0, "CompilotHint", { link = "NonText", default = true })
end

--- Configure and start compilot; calling it again applies the new options (idempotent).
---@param opts table|nil see :help compilot-config
function M.setup(opts)
  local previous = M._configured and vim.deepcopy(config.options.settings) or nil
  for b in pairs(attached) do
    detach(b)
  end
  config.setup(opts)
  local group = api.nvim_create_augroup(GROUP, { clear = true })
  highlights()
  api.nvim_create_autocmd("ColorScheme", {
    group = group,
    desc = "compilot: highlight groups",
    callback = highlights,
  })
  api.nvim_create_autocmd("FileType", {
    group = group,
    pattern = config.options.filetypes,
    desc = "compilot: start the server",
    callback = function(args)
      lsp.start(args.buf, attach)
    end,
  })
  api.nvim_create_user_command("CompilotStats", stats_command,
    { desc = "compilot: today's figures, the adapter and the model" })
  api.nvim_create_user_command("CompilotTrain", train_command,
    { desc = "compilot: start a training round" })
  -- Buffers opened before setup(), and those attached before it ran again.
  for _, b in ipairs(api.nvim_list_bufs()) do
    if api.nvim_buf_is_loaded(b) and vim.tbl_contains(config.options.filetypes, vim.bo[b].filetype)
    then
      local client = lsp.client(b)
      if client then
        attach(client, b)
      else
        lsp.start(b, attach)
      end
    end
  end
  if previous and not vim.deep_equal(previous, config.options.settings) then
    lsp.push_settings()
  end
  M._configured = true
end

return M

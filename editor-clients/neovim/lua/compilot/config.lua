--- compilot.nvim settings: the only place defaults live, merged once per setup().
local M = {}

--- Defaults, documented in :help compilot-config.
M.defaults = {
  -- The language server command (LSP over stdio).
  cmd = { "compilot", "serve" },
  -- Extra environment for the server process, e.g. { COMPILOT_DATA_DIR = "/tmp/c" }.
  cmd_env = nil,
  -- Filetypes that start the server and get suggestions.
  filetypes = {
    "python", "c", "cpp", "java", "javascript", "javascriptreact", "typescript",
    "typescriptreact", "go", "rust", "lua", "sh",
  },
  -- Files that mark a project root; without one the file's folder is the root.
  root_markers = { ".git", "pyproject.toml", "setup.py", "package.json", "Cargo.toml", "go.mod",
    "pom.xml", "build.gradle", "Makefile", "compile_commands.json" },
  -- Request a suggestion while typing, after `debounce_ms` without a keystroke.
  auto_trigger = true,
  debounce_ms = 150,
  -- "auto": Neovim's own vim.lsp.inline_completion where it exists (0.12) and auto_trigger is
  -- on, else extmarks; "builtin" or "extmarks" to choose.
  ghost_text = "auto",
  -- Insert-mode keys; false disables one. accept and accept_line fall through to what the key
  -- did before when no suggestion is shown, and so does dismiss.
  keymaps = {
    accept = "<Tab>",
    accept_line = "<S-Tab>",
    dismiss = "<C-]>",
    next = "<M-]>",
    prev = "<M-[>",
    suggest = "<M-\\>",
  },
  -- The server's settings, sent as initializationOptions (and as
  -- workspace/didChangeConfiguration when setup() runs again), e.g.
  -- { completion = { candidates = 3, maxTokens = 64 }, model = { path = "/m.gguf" } }.
  settings = {},
}

M.options = vim.deepcopy(M.defaults)

local MODES = { auto = true, builtin = true, extmarks = true }

--- Merge `opts` over the defaults (not over the previous call's options: setup is idempotent).
---@param opts table|nil
---@return table options
function M.setup(opts)
  local options = vim.tbl_deep_extend("force", vim.deepcopy(M.defaults), opts or {})
  -- Lists replace, they do not merge by index.
  for _, key in ipairs({ "cmd", "filetypes", "root_markers" }) do
    if opts and opts[key] ~= nil then
      options[key] = opts[key]
    end
  end
  if type(options.cmd) == "string" then
    options.cmd = { options.cmd }
  end
  for _, spec in ipairs({
    { "cmd", "table" }, { "filetypes", "table" }, { "root_markers", "table" },
    { "auto_trigger", "boolean" }, { "debounce_ms", "number" }, { "keymaps", "table" },
    { "settings", "table" }, { "cmd_env", "table", true },
  }) do
    local name, kind, optional = spec[1], spec[2], spec[3]
    local value = options[name]
    if not (value == nil and optional) and type(value) ~= kind then
      error(("compilot: setup option %s must be a %s, not %s"):format(name, kind, type(value)), 0)
    end
  end
  if not MODES[options.ghost_text] then
    error(("compilot: ghost_text must be \"auto\", \"builtin\" or \"extmarks\", not %s")
      :format(vim.inspect(options.ghost_text)), 0)
  end
  if #options.cmd == 0 then
    error("compilot: cmd must name the server command, e.g. { \"compilot\", \"serve\" }", 0)
  end
  M.options = options
  return options
end

--- Whether this Neovim has vim.lsp.inline_completion (0.12).
function M.has_builtin()
  local ok, ic = pcall(function()
    return vim.lsp.inline_completion
  end)
  return ok and type(ic) == "table" and type(ic.get) == "function" and type(ic.select) == "function"
    and type(ic.enable) == "function"
end

--- "builtin" or "extmarks": who draws the ghost text.
function M.ghost_mode()
  local want = M.options.ghost_text
  if want == "extmarks" then
    return "extmarks"
  end
  if want == "builtin" then
    return M.has_builtin() and "builtin" or "extmarks"
  end
  return (M.has_builtin() and M.options.auto_trigger) and "builtin" or "extmarks"
end

return M

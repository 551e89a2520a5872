--- :checkhealth compilot — the server command, the model, and the compilers the checks use.
local config = require("compilot.config")
local lsp = require("compilot.lsp")

local M = {}

--- Compilers and tools the server's compile checks run, by language.
M.TOOLCHAINS = {
  { "python3", "Python" },
  { "gcc", "C" },
  { "g++", "C++" },
  { "javac", "Java" },
  { "node", "JavaScript" },
  { "tsc", "TypeScript" },
  { "go", "Go" },
  { "rustc", "Rust" },
}

--- `cmd` with its last "serve" replaced by `sub` (e.g. "version"), or nil.
local function subcommand(cmd, sub)
  if cmd[#cmd] ~= "serve" then
    return nil
  end
  local out = vim.list_slice(cmd, 1, #cmd - 1)
  table.insert(out, sub)
  return out
end

local function run(cmd)
  local ok, result = pcall(function()
    return vim.system(cmd, { text = true, env = config.options.cmd_env }):wait(20000)
  end)
  if not ok or not result or result.code ~= 0 then
    return nil
  end
  return vim.trim(result.stdout or "")
end

local function check_server(h)
  local cmd = config.options.cmd
  local path = vim.fn.exepath(cmd[1])
  if path == "" then
    h.error(("server command not found: %s"):format(cmd[1]), {
      "Install compilot (pip install compilot, or `make install` in its repository) and put "
        .. "its `compilot` on $PATH",
      "or set cmd = { \"/path/to/.venv/bin/compilot\", \"serve\" } in setup()",
    })
    return false
  end
  local version_cmd = subcommand(cmd, "version")
  local version = version_cmd and run(version_cmd)
  h.ok(("server found: %s%s (%s)"):format(table.concat(cmd, " "),
    version and (", version " .. version) or "", path))
  return true
end

local function check_model(h)
  local client = lsp.client(nil)
  if client then
    local ok, response = pcall(function()
      if vim.fn.has("nvim-0.11") == 1 then
        return client:request_sync("workspace/executeCommand",
          { command = "compilot.status", arguments = {} }, 5000)
      end
      return client.request_sync("workspace/executeCommand",
        { command = "compilot.status", arguments = {} }, 5000)
    end)
    local status = ok and response and response.result
    if type(status) == "table" then
      if status.error and status.error ~= vim.NIL then
        h.error("model: " .. status.error, { "Set settings.model.path to a GGUF file" })
      elseif status.model and status.model ~= vim.NIL then
        h.ok(("model found: %s (adapter %s)"):format(status.model, status.adapter or "base"))
      else
        h.warn("model: the server has not loaded one yet")
      end
      return
    end
    h.warn("model: the running server did not answer compilot.status")
    return
  end
  local path = vim.tbl_get(config.options.settings, "model", "path")
  if path and path ~= "" then
    path = vim.fn.expand(path)
    if vim.fn.filereadable(path) == 1 then
      h.ok("model found: " .. path)
    else
      h.error("model file not found: " .. path, { "Fix settings.model.path in setup()" })
    end
  else
    h.info("model: the embedded SmolLM2-135M (no settings.model.path); open a file of a "
      .. "configured filetype and run :checkhealth compilot again to have the server confirm it")
  end
end

function M.check()
  local h = vim.health
  h.start("compilot")
  if not require("compilot")._configured then
    h.warn("require(\"compilot\").setup() has not been called")
  end
  local v = vim.version()
  h.info(("Neovim %d.%d.%d; ghost text: %s"):format(v.major, v.minor, v.patch,
    config.ghost_mode() == "builtin" and "vim.lsp.inline_completion (built in)"
      or "compilot's extmarks"))
  if check_server(h) then
    check_model(h)
  end
  h.start("compilot: compilers for the compile checks")
  for _, tool in ipairs(M.TOOLCHAINS) do
    local path = vim.fn.exepath(tool[1])
    if path ~= "" then
      h.ok(("%s found (%s): %s"):format(tool[1], tool[2], path))
    else
      h.warn(("%s not found: accepted %s code is not compiled (recorded as toolchain_missing)")
        :format(tool[1], tool[2]))
    end
  end
end

return M

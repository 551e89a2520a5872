--- Insert-mode keys for compilot's buffers. A key whose action finds no suggestion does what it
--- did before (the buffer's or the global mapping it replaced, else the key itself), as
--- copilot.vim's <Tab> does.
local config = require("compilot.config")
local api = vim.api

local M = {}

local DESC = "compilot: "
---@type table<integer, table<string, table>> bufnr -> lhs -> the mapping it replaced (maparg dict)
local replaced = {}

local function feed(keys, remap)
  -- "i": in front of the typeahead, where a mapping's own keys would go.
  api.nvim_feedkeys(keys, remap and "mi" or "ni", false)
end

--- Do what `mapping` (a maparg() dict, possibly empty) did for `lhs`.
local function fall_through(mapping, lhs)
  if not mapping or vim.tbl_isempty(mapping) then
    feed(vim.keycode(lhs), false)
    return
  end
  local keys
  if mapping.callback then
    keys = mapping.callback()
    if mapping.expr ~= 1 then
      return
    end
  else
    local rhs = (mapping.rhs or ""):gsub("<[Ss][Ii][Dd]>", "<SNR>" .. (mapping.sid or 0) .. "_")
    keys = mapping.expr == 1 and api.nvim_eval(rhs) or rhs
  end
  if type(keys) == "string" and keys ~= "" then
    feed(vim.keycode(keys), mapping.noremap ~= 1)
  end
end

local function is_ours(mapping)
  return mapping and type(mapping.desc) == "string" and mapping.desc:sub(1, #DESC) == DESC
end

--- Map `lhs` in `bufnr` to `action`; when it returns false, the key falls through.
local function map(bufnr, lhs, action, desc)
  local before = api.nvim_buf_call(bufnr, function()
    return vim.fn.maparg(lhs, "i", false, true)
  end)
  replaced[bufnr] = replaced[bufnr] or {}
  if not is_ours(before) then
    replaced[bufnr][lhs] = before
  end
  vim.keymap.set("i", lhs, function()
    if not action() then
      fall_through(replaced[bufnr] and replaced[bufnr][lhs], lhs)
    end
  end, { buffer = bufnr, silent = true, desc = DESC .. desc })
end

--- Map config.options.keymaps in `bufnr` to `actions` (name -> function returning whether it
--- acted; false lets the key fall through).
function M.attach(bufnr, actions)
  M.detach(bufnr)
  local keys = config.options.keymaps
  local spec = {
    { "accept", "accept the suggestion" },
    { "accept_line", "accept the suggestion's next line" },
    { "dismiss", "dismiss the suggestion" },
    { "next", "next suggestion" },
    { "prev", "previous suggestion" },
    { "suggest", "ask for a suggestion" },
  }
  for _, s in ipairs(spec) do
    local lhs = keys[s[1]]
    if lhs then
      map(bufnr, lhs, actions[s[1]], s[2])
    end
  end
end

--- Remove compilot's keys from `bufnr`, putting back buffer-local mappings they replaced.
function M.detach(bufnr)
  local before = replaced[bufnr] or {}
  replaced[bufnr] = nil
  if not api.nvim_buf_is_valid(bufnr) then
    return
  end
  for _, m in ipairs(api.nvim_buf_get_keymap(bufnr, "i")) do
    if is_ours(m) then
      pcall(api.nvim_buf_del_keymap, bufnr, "i", m.lhs)
    end
  end
  for _, old in pairs(before) do
    if old.buffer == 1 then
      api.nvim_buf_call(bufnr, function()
        pcall(vim.fn.mapset, "i", false, old)
      end)
    end
  end
end

return M

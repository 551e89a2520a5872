--- Pure text helpers for suggestions: lines, UTF-16 lengths and columns, typing through.
local M = {}

---@param s string
---@return string[]
function M.lines(s)
  return vim.split(s, "\n", { plain = true })
end

--- Byte length of the UTF-8 sequence that starts with byte `b`.
local function seq_len(b)
  if b >= 0xF0 then
    return 4
  elseif b >= 0xE0 then
    return 3
  elseif b >= 0xC0 then
    return 2
  end
  return 1
end

--- Length of `s` in UTF-16 code units (what LSP positions and lengths count).
---@param s string
---@return integer
function M.utf16_len(s)
  local n, i = 0, 1
  while i <= #s do
    local len = seq_len(s:byte(i))
    n = n + (len == 4 and 2 or 1)
    i = i + len
  end
  return n
end

--- Byte column of the LSP `character` in `line`, for the client's position encoding.
---@param line string
---@param character integer
---@param encoding string|nil "utf-8", "utf-16" (default) or "utf-32"
---@return integer
function M.byte_col(line, character, encoding)
  if encoding == "utf-8" then
    return math.min(character, #line)
  end
  local units, i = 0, 1
  while i <= #line and units < character do
    local len = seq_len(line:byte(i))
    units = units + ((encoding ~= "utf-32" and len == 4) and 2 or 1)
    i = i + len
  end
  return i - 1
end

--- What accept_line takes from `s`: up to the end of its first line that is not blank (a
--- suggestion made at the end of `def f():` starts with a newline and the indent).
---@param s string
---@return string
function M.first_line(s)
  local pos = 1
  while true do
    local nl = s:find("\n", pos, true)
    local stop = (nl or #s + 1) - 1
    if s:sub(pos, stop):find("%S") or not nl then
      return s:sub(1, stop)
    end
    pos = nl + 1
  end
end

--- The rest of `suggestion` after the user typed `typed`, or nil when the typing left it.
---@param suggestion string
---@param typed string
---@return string|nil
function M.after_typed(suggestion, typed)
  if suggestion:sub(1, #typed) == typed then
    return suggestion:sub(#typed + 1)
  end
  return nil
end

--- `s` with tabs shown as spaces (virtual text does not expand them).
---@param s string
---@param tabstop integer
---@return string
function M.display(s, tabstop)
  return (s:gsub("\t", string.rep(" ", tabstop)))
end

--- The text of an LSP InlineCompletionItem (a string or a snippet's StringValue).
---@param item table
---@return string
function M.insert_text(item)
  local t = item.insertText or item.insert_text
  if type(t) == "table" then
    return t.value or ""
  end
  return t or ""
end

--- The candidate id compilot puts first in the item's command arguments.
---@param item table
---@return string|nil
function M.candidate_id(item)
  local command = item and item.command
  local args = command and command.arguments
  local id = args and args[1]
  return type(id) == "string" and id or nil
end

return M

"""The language server: prompts, the engine, cutting, ranking, the LSP handlers."""

"""Storage, embeddings, ingestion and search. Knows nothing of agent/, the chat model or the CLI."""

"""The token meter shared by the OpenAI and Anthropic integrations (meter, patch, setup)."""

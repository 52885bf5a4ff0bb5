"""e2llm: EEG-to-emotion language models for Hugging Face Transformers."""

__version__ = "0.1.0"

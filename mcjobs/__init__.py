"""MetaChat Jobs: job orchestration in front of MetaChat's media API."""

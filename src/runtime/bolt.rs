//! Read-only bbolt reader (STUB: interface only; being implemented).

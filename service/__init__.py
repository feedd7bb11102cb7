"""keepwise service layer: the FastAPI app and the keepwise CLI (thin, no business logic)."""

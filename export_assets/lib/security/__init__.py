"""Credentials: recognising them, the export policies (redact, encrypt, reference), the
export key's cryptography and the leak scanner that proves none left in clear."""

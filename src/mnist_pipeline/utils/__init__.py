"""Small tools every layer may use: atomic writes, redaction, the pipeline's paths, exception
chains. They import nothing else of the package."""

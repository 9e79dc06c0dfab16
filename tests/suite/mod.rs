//! One user-visible behaviour per file.

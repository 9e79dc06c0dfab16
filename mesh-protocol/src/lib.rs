//! Wire types of the kimaki mesh protocol.

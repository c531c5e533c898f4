//! C ABI for acap.
//!
//! Placeholder: this crate exists so the workspace has its final shape. The C API
//! (`include/acap.h`, shared and static libraries, `acap_*` functions) is not implemented yet;
//! it is tracked by the "C ABI and include/acap.h" issue. Nothing here is exported.

//! `#[saga]` and `#[step]`.
use proc_macro::TokenStream;

/// Placeholder.
#[proc_macro_attribute]
pub fn saga(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

/// Placeholder.
#[proc_macro_attribute]
pub fn step(_args: TokenStream, item: TokenStream) -> TokenStream {
    item
}

// `#[saga]` on a fn.
use sagaflow::saga;

#[saga]
pub async fn book() {}

fn main() {}

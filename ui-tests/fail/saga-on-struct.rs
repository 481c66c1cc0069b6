// `#[saga]` on a struct.
use sagaflow::saga;

#[saga]
pub struct Shop {
    pub name: String,
}

fn main() {}

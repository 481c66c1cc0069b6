// `#[saga]` on a trait impl.
use sagaflow::saga;

pub struct Shop;

#[saga]
impl Default for Shop {
    fn default() -> Self {
        Shop
    }
}

fn main() {}

// A saga without steps.
use sagaflow::saga;

pub struct Shop;

#[saga]
impl Shop {
    async fn helper(&self) -> u32 {
        1
    }
}

fn main() {}

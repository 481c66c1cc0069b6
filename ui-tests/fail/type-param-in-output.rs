// A type parameter of the saga type may name clients, not data: the state is one type for
// every `Booking<C>`.
use sagaflow::{saga, SagaContext, StepResult};

pub trait Client: Send + Sync + 'static {
    type Order;
}

pub struct Booking<C> {
    client: C,
}

#[saga]
impl<C: Client> Booking<C> {
    #[step(pivot)]
    async fn create_order(&self, _cx: &SagaContext, req: &u32) -> StepResult<Vec<C::Order>> {
        let _ = (req, &self.client);
        Ok(Vec::new())
    }
}

fn main() {}

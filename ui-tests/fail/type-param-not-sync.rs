// A generic saga type must be `Send + Sync + 'static`: a client trait that is only `Send`
// leaves `Booking<C>` not `Sync`; rustc says which bound to add, on the saga type.
use sagaflow::{saga, SagaContext, StepResult};

pub trait Client: Send + 'static {
    fn price(&self) -> u64;
}

pub struct Booking<C> {
    client: C,
}

#[saga]
impl<C: Client> Booking<C> {
    #[step(pivot)]
    async fn charge(&self, _cx: &SagaContext, req: &u64) -> StepResult<u64> {
        Ok(self.client.price() * req)
    }
}

fn main() {}

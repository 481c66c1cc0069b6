// A step consuming the saga input and two earlier outputs; its parameters come in any order.
use sagaflow::{Saga, SagaContext, StepResult, saga};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub sku: String,
    pub qty: u32,
}

struct Shop;

#[saga]
impl Shop {
    #[step(compensate = release)]
    async fn reserve(&self, _cx: &SagaContext, request: &Request) -> StepResult<u32> {
        Ok(request.qty)
    }
    async fn release(&self, _cx: &SagaContext, _reserve: &u32) -> StepResult<()> {
        Ok(())
    }

    #[step(compensate = refund)]
    async fn price(&self, _cx: &SagaContext, request: &Request) -> StepResult<u64> {
        Ok(request.sku.len() as u64 * 100)
    }
    async fn refund(&self, _cx: &SagaContext, _price: &u64) -> StepResult<()> {
        Ok(())
    }

    #[step(pivot)]
    async fn invoice(
        &self,
        _cx: &SagaContext,
        price: &u64,
        request: &Request,
        reserve: &u32,
    ) -> StepResult<String> {
        Ok(format!("{} x {} = {}", request.sku, reserve, price * u64::from(*reserve)))
    }
}

fn main() {
    let uses = <Shop as Saga>::description().steps[2].uses;
    assert_eq!(uses, &["price", "request", "reserve"]);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new("Shop", "trace");
    let mut state = Shop::start(Request { sku: "ab".into(), qty: 3 });
    while !Shop::cursor(&state).is_terminal() {
        let effect = rt.block_on(Shop.execute(&cx, &state)).unwrap();
        state = Shop::apply(state, effect);
    }
    assert_eq!(Shop::finish(state).unwrap(), "ab x 3 = 600");
}

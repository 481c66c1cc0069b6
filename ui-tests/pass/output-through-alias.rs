// A return type the macro cannot read `T` from (an alias of `StepResult<T>`) names its
// output with `output = T`; `Result<T, StepError>` is read as is.
use sagaflow::{Saga, SagaContext, StepError, StepResult, saga};

type R<T> = StepResult<T>;
type Counted = StepResult<u32>;

struct Count;

#[saga]
impl Count {
    #[step(compensate = uncount, output = u32)]
    async fn count(&self, _cx: &SagaContext, text: &String) -> Counted {
        Ok(text.len() as u32)
    }
    async fn uncount(&self, _cx: &SagaContext, _count: &u32) -> R<()> {
        Ok(())
    }

    #[step(pivot, output = Vec<u32>)]
    async fn double(&self, _cx: &SagaContext, count: &u32) -> R<Vec<u32>> {
        Ok(vec![*count, *count * 2])
    }

    #[step(retriable)]
    async fn sum(&self, _cx: &SagaContext, double: &[u32]) -> Result<u64, StepError> {
        Ok(double.iter().map(|n| u64::from(*n)).sum())
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new("Count", "trace-alias");
    let mut state = Count::start("abcd".into());
    while !Count::cursor(&state).is_terminal() {
        let effect = rt.block_on(Count.execute(&cx, &state)).unwrap();
        state = Count::apply(state, effect);
    }
    assert_eq!(Count::finish(state).unwrap(), 12);
}

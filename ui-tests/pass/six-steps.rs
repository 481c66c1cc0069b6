// Six compensatable steps: a chain where each step consumes the previous output; every state
// survives a JSON round trip, and rollback from each step targets the previous compensation.
use sagaflow::{Cursor, Saga, SagaContext, StepResult, saga};

struct Trip;

#[saga]
impl Trip {
    #[step(compensate = undo_a)]
    async fn a(&self, _cx: &SagaContext, start: &u32) -> StepResult<u32> {
        Ok(start + 1)
    }
    async fn undo_a(&self, _cx: &SagaContext, _a: &u32) -> StepResult<()> {
        Ok(())
    }
    #[step(compensate = undo_b)]
    async fn b(&self, _cx: &SagaContext, a: &u32) -> StepResult<u32> {
        Ok(a + 1)
    }
    async fn undo_b(&self, _cx: &SagaContext, _b: &u32) -> StepResult<()> {
        Ok(())
    }
    #[step(compensate = undo_c)]
    async fn c(&self, _cx: &SagaContext, b: &u32) -> StepResult<String> {
        Ok(format!("c{b}"))
    }
    async fn undo_c(&self, _cx: &SagaContext, _c: &str) -> StepResult<()> {
        Ok(())
    }
    #[step(compensate = undo_d)]
    async fn d(&self, _cx: &SagaContext, c: &str) -> StepResult<Vec<u8>> {
        Ok(c.as_bytes().to_vec())
    }
    async fn undo_d(&self, _cx: &SagaContext, _d: &[u8]) -> StepResult<()> {
        Ok(())
    }
    #[step(compensate = undo_e)]
    async fn e(&self, _cx: &SagaContext, d: &[u8]) -> StepResult<usize> {
        Ok(d.len())
    }
    async fn undo_e(&self, _cx: &SagaContext, _e: &usize) -> StepResult<()> {
        Ok(())
    }
    #[step(compensate = undo_f)]
    async fn f(&self, _cx: &SagaContext, start: &u32, e: &usize) -> StepResult<u64> {
        Ok(u64::from(*start) + *e as u64)
    }
    async fn undo_f(&self, _cx: &SagaContext, _f: &u64) -> StepResult<()> {
        Ok(())
    }
}

fn main() {
    assert_eq!(<Trip as Saga>::description().steps.len(), 6);
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new("Trip", "trace");
    let mut state = Trip::start(1);
    let mut index = 0;
    while let Cursor::Step(at) = Trip::cursor(&state) {
        assert_eq!(at, index);
        let json = serde_json::to_string(&state).unwrap();
        let back: TripState = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        let rolled = Trip::rollback(back);
        let expected = if at == 0 { Cursor::Compensated } else { Cursor::Compensate(at - 1) };
        assert_eq!(Trip::cursor(&rolled), expected);
        let effect = rt.block_on(Trip.execute(&cx, &state)).unwrap();
        state = Trip::apply(state, effect);
        index += 1;
    }
    assert_eq!(index, 6);
    assert_eq!(Trip::finish(state).unwrap(), 1 + 2);
}

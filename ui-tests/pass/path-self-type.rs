// `#[saga] impl module::Type` and `impl Type<ConcreteArgs>`: the generated names come from
// the last segment (`TripState`, `LegState`); the impl is for the type as written.
use sagaflow::{Saga, SagaContext, StepResult, saga};

mod travel {
    pub struct Trip;
    pub struct Leg<T>(pub T);
}

#[saga]
impl travel::Trip {
    #[step(pivot)]
    async fn book(&self, _cx: &SagaContext, days: &u32) -> StepResult<u32> {
        Ok(days * 100)
    }
}

#[saga]
impl travel::Leg<u8> {
    #[step(pivot)]
    async fn fly(&self, _cx: &SagaContext, hops: &u8) -> StepResult<u16> {
        Ok(u16::from(*hops) + u16::from(self.0))
    }
}

fn drive<S: Saga>(saga: &S, input: S::Input) -> S::Output {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let cx = SagaContext::new(S::description().name, "trace");
    let mut state = S::start(input);
    while !S::cursor(&state).is_terminal() {
        let effect = rt.block_on(saga.execute(&cx, &state)).unwrap();
        state = S::apply(state, effect);
    }
    S::finish(state).unwrap()
}

fn main() {
    assert_eq!(drive(&travel::Trip, 3), 300);
    assert_eq!(drive(&travel::Leg(7), 2), 9);
    let state: TripState = travel::Trip::start(1);
    assert!(matches!(state, TripState::Book { days: 1 }));
    let state: LegState = travel::Leg::<u8>::start(1);
    assert!(matches!(state, LegState::Fly { hops: 1 }));
    assert_eq!(<travel::Trip as Saga>::description().name, "Trip");
}

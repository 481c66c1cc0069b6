//! The sync engine's overhead: a 10-step saga of no-op steps through the engine, against the
//! same ten calls written by hand. Prints the overhead per step (ns) and the engine's heap
//! allocations per step.
//!
//! Run: `cargo bench --bench engine_overhead`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use sagaflow::engine::SyncEngine;
use sagaflow::{Saga, SagaContext, StepResult, saga};

/// Counts heap allocations so the bench can report allocations per step.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

struct Ten;

#[saga]
impl Ten {
    #[step(compensate = u0)]
    async fn s0(&self, _cx: &SagaContext, input: &u64) -> StepResult<u64> {
        Ok(black_box(*input + 1))
    }
    #[step(compensate = u1)]
    async fn s1(&self, _cx: &SagaContext, s0: &u64) -> StepResult<u64> {
        Ok(black_box(s0 + 1))
    }
    #[step(compensate = u2)]
    async fn s2(&self, _cx: &SagaContext, s1: &u64) -> StepResult<u64> {
        Ok(black_box(s1 + 1))
    }
    #[step(compensate = u3)]
    async fn s3(&self, _cx: &SagaContext, s2: &u64) -> StepResult<u64> {
        Ok(black_box(s2 + 1))
    }
    #[step(compensate = u4)]
    async fn s4(&self, _cx: &SagaContext, s3: &u64) -> StepResult<u64> {
        Ok(black_box(s3 + 1))
    }
    #[step(compensate = u5)]
    async fn s5(&self, _cx: &SagaContext, s4: &u64) -> StepResult<u64> {
        Ok(black_box(s4 + 1))
    }
    #[step(compensate = u6)]
    async fn s6(&self, _cx: &SagaContext, s5: &u64) -> StepResult<u64> {
        Ok(black_box(s5 + 1))
    }
    #[step(compensate = u7)]
    async fn s7(&self, _cx: &SagaContext, s6: &u64) -> StepResult<u64> {
        Ok(black_box(s6 + 1))
    }
    #[step(compensate = u8)]
    async fn s8(&self, _cx: &SagaContext, s7: &u64) -> StepResult<u64> {
        Ok(black_box(s7 + 1))
    }
    #[step(compensate = u9)]
    async fn s9(&self, _cx: &SagaContext, s8: &u64) -> StepResult<u64> {
        Ok(black_box(s8 + 1))
    }

    async fn u0(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
    async fn u1(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
    async fn u2(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
    async fn u3(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
    async fn u4(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
    async fn u5(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
    async fn u6(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
    async fn u7(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
    async fn u8(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
    async fn u9(&self, _cx: &SagaContext, _v: &u64) -> StepResult<()> {
        Ok(())
    }
}

/// The same ten calls, written by hand.
async fn by_hand(saga: &Ten, cx: &SagaContext, input: u64) -> StepResult<u64> {
    let s0 = saga.s0(cx, &input).await?;
    let s1 = saga.s1(cx, &s0).await?;
    let s2 = saga.s2(cx, &s1).await?;
    let s3 = saga.s3(cx, &s2).await?;
    let s4 = saga.s4(cx, &s3).await?;
    let s5 = saga.s5(cx, &s4).await?;
    let s6 = saga.s6(cx, &s5).await?;
    let s7 = saga.s7(cx, &s6).await?;
    let s8 = saga.s8(cx, &s7).await?;
    saga.s9(cx, &s8).await
}

const STEPS: u64 = 10;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("tokio runtime")
}

fn time_engine(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    let engine = SyncEngine::new();
    let cx = SagaContext::new(Ten::description().name, "bench");
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            black_box(
                engine
                    .run(&Ten, &cx, black_box(i))
                    .await
                    .expect("no-op saga completes"),
            );
        }
        start.elapsed()
    })
}

fn time_by_hand(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    let cx = SagaContext::new(Ten::description().name, "bench");
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..iters {
            black_box(
                by_hand(&Ten, &cx, black_box(i))
                    .await
                    .expect("no-op calls complete"),
            );
        }
        start.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("ten_noop_steps");
    group.bench_function("engine", |b| b.iter_custom(|iters| time_engine(&rt, iters)));
    group.bench_function("by_hand", |b| {
        b.iter_custom(|iters| time_by_hand(&rt, iters))
    });
    group.finish();
}

/// Direct summary: overhead per step and allocations per step, measured over many runs.
fn summary() {
    let rt = runtime();
    let runs = 200_000;
    // Warm up both paths.
    time_engine(&rt, 10_000);
    time_by_hand(&rt, 10_000);
    let engine = (0..5)
        .map(|_| time_engine(&rt, runs))
        .min()
        .unwrap_or_default();
    let manual = (0..5)
        .map(|_| time_by_hand(&rt, runs))
        .min()
        .unwrap_or_default();
    let per_step = |d: Duration| d.as_nanos() as f64 / (runs * STEPS) as f64;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    time_engine(&rt, runs);
    let engine_allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    time_by_hand(&rt, runs);
    let manual_allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!(
        "ten_noop_steps summary: engine {:.1} ns/step, by hand {:.1} ns/step, overhead {:.1} ns/step; \
         allocations/step: engine {:.2}, by hand {:.2}",
        per_step(engine),
        per_step(manual),
        per_step(engine) - per_step(manual),
        engine_allocs as f64 / (runs * STEPS) as f64,
        manual_allocs as f64 / (runs * STEPS) as f64,
    );
}

criterion_group!(benches, bench);

fn main() {
    summary();
    benches();
    Criterion::default().configure_from_args().final_summary();
}

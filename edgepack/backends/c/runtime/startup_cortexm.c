/* edgepack start-up code for Cortex-M (Armv7-M) bare metal with newlib's rdimon (semihosting).
 *
 * Vector table, reset handler (copy .data from flash, zero .bss, enable the FPU, call newlib's
 * _start, which sets up the heap and stack from the semihosting HEAPINFO call and runs main),
 * a SysTick handler counting 2^24-tick wraps for the harness, and fault handlers that end the
 * run through semihosting SYS_EXIT so a crash fails fast instead of hanging the emulator.
 */
#include <stdint.h>

extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss;
extern void _estack(void); /* linker script symbol, the top of RAM: declared as a function so that the
                              vector table needs no object-to-function pointer cast (ISO C) */
extern void _start(void);

volatile uint32_t edgepack_systick_wraps;

void Reset_Handler(void);
void Fault_Handler(void);
void SysTick_Handler(void);

void SysTick_Handler(void)
{
    edgepack_systick_wraps++;
}

void Fault_Handler(void)
{
    /* SYS_EXIT (0x18) with ADP_Stopped_RunTimeErrorUnknown (0x20023): QEMU exits with status 1 */
    register uint32_t r0 __asm("r0") = 0x18u;
    register uint32_t r1 __asm("r1") = 0x20023u;
    __asm volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

__attribute__((section(".isr_vector"), used)) void (*const edgepack_vectors[16])(void) = {
    _estack, /* initial stack pointer */
    Reset_Handler,
    Fault_Handler, /* NMI */
    Fault_Handler, /* HardFault */
    Fault_Handler, /* MemManage */
    Fault_Handler, /* BusFault */
    Fault_Handler, /* UsageFault */
    0, 0, 0, 0,
    Fault_Handler, /* SVCall */
    Fault_Handler, /* DebugMonitor */
    0,
    Fault_Handler, /* PendSV */
    SysTick_Handler,
};

#if defined(EDGEPACK_OWN_CRT0)
/* What rdimon's _start does, minus its semihosting HEAPINFO call: on machines whose HEAPINFO names the code
 * memory (mps3-an547 reports ITCM) it would move the stack there and set a heap limit below the heap
 * (newlib's sbrk starts at `end`, after .bss), so fopen fails. The stack stays at _estack, the heap
 * grows from `end` towards it. */
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern int main(int argc, char **argv);
extern void exit(int status);

static void edgepack_crt0(void)
{
    static char name[] = "firmware";
    static char *argv[] = {name, 0};
    initialise_monitor_handles();
    __libc_init_array();
    exit(main(1, argv));
}
#endif

void Reset_Handler(void)
{
    uint32_t *src = &_sidata, *dst = &_sdata;
    while (dst < &_edata) {
        *dst++ = *src++;
    }
    for (dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
#if defined(__ARM_FP)
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: full access to CP10/CP11 (FPU) */
    __asm volatile("dsb\n\tisb" : : : "memory");
#endif
#if defined(EDGEPACK_OWN_CRT0)
    edgepack_crt0();
#else
    _start();
#endif
    for (;;) {
    }
}
